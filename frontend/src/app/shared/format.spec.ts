import {
  baseName,
  fixed,
  formatBytes,
  formatDateTime,
  formatDuration,
  formatVideoTime,
} from './format';

describe('format helpers', () => {
  it.each([
    [0, '0:00.0'],
    [5.04, '0:05.0'],
    [75.45, '1:15.5'],
    [59.96, '1:00.0'],
    [null, '–'],
    [NaN, '–'],
  ])('formatVideoTime(%s) = %s', (s, text) => {
    expect(formatVideoTime(s)).toBe(text);
  });

  it.each([
    [12.4, '12 s'],
    [612, '10 min 12 s'],
    [null, '–'],
  ])('formatDuration(%s) = %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });

  it('formats numbers, names and sizes', () => {
    expect(fixed(3.14159, 2)).toBe('3.14');
    expect(fixed(null)).toBe('–');
    expect(baseName('urban clip.mp4')).toBe('urban clip');
    expect(baseName('.hidden')).toBe('.hidden');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MB');
  });
});

describe('formatDateTime', () => {
  it('writes an instant in local time, to the second', () => {
    const at = new Date(2026, 4, 1, 14, 3, 7);
    expect(formatDateTime(at.toISOString())).toBe('2026-05-01 14:03:07');
  });

  it('none or unreadable: a dash', () => {
    expect(formatDateTime(null)).toBe('–');
    expect(formatDateTime('')).toBe('–');
    expect(formatDateTime('not a date')).toBe('–');
  });
});
