import { Phase, nextPhase } from './video-detail.component';

describe('nextPhase (stored status -> page phase)', () => {
  it.each<[Phase, string | null, boolean, Phase]>([
    // opening the page: the status as it is
    ['idle', 'processing', true, 'running'],
    ['idle', 'stopping', true, 'stopping'],
    ['idle', 'completed', true, 'ended'],
    ['idle', 'failed', true, 'failed'],
    ['idle', 'stopped', true, 'stopped'],
    ['idle', 'uploaded', true, 'idle'],
    // later: a stream seen running ends
    ['running', 'completed', false, 'ended'],
    ['running', 'failed', false, 'failed'],
    ['stopping', 'stopped', false, 'stopped'],
    ['ended', 'stopped', false, 'stopped'],
    ['ended', 'failed', false, 'failed'],
    // the status lags behind the end of stream: the page keeps what it saw
    ['ended', 'processing', false, 'ended'],
    ['ended', 'stopping', false, 'ended'],
    // a previous run's status while a new one starts
    ['starting', 'failed', false, 'starting'],
    ['starting', 'completed', false, 'starting'],
    // someone else started it
    ['idle', 'processing', false, 'running'],
    ['running', 'stopping', false, 'stopping'],
  ])('%s + %s (initial %s) -> %s', (phase, status, initial, expected) => {
    expect(nextPhase(phase, status, initial)).toBe(expected);
  });
});
