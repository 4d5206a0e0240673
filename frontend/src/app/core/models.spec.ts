import { STREAM_STATES, VideoStatus, streamState, streamStatus } from './models';

describe('stored status -> page state (the one mapping)', () => {
  it.each<[VideoStatus | null, string, string]>([
    ['uploaded', 'idle', 'uploaded'],
    ['processing', 'running', 'streaming'],
    ['stopping', 'stopping', 'streaming'],
    ['completed', 'ended', 'completed'],
    ['stopped', 'stopped', 'stopped'],
    ['failed', 'failed', 'failed'],
    [null, 'idle', 'uploaded'],
  ])('%s -> %s (badge %s)', (status, state, badge) => {
    expect(streamState(status)).toBe(state);
    expect(streamStatus({ status })).toBe(badge);
  });

  it('maps every status of the backend, and nothing else', () => {
    expect(Object.keys(STREAM_STATES).sort()).toEqual(
      ['completed', 'failed', 'processing', 'stopped', 'stopping', 'uploaded'].sort(),
    );
    expect(streamState('from a newer backend')).toBe('idle');
  });
});
