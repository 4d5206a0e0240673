import { TestBed } from '@angular/core/testing';

import { AnalyticsData, ProcessedFrameData } from './models';
import {
  SocketLike,
  WEBSOCKET_CONFIG,
  WEBSOCKET_FACTORY,
  WEBSOCKET_URL,
  WebsocketConfig,
  WebsocketService,
} from './websocket.service';

/** A WebSocket the test drives: `open()`, `receive()`, `drop()`; it records what was sent. */
class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  closed = false;
  onopen: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  static get last(): FakeSocket {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }

  close(): void {
    this.closed = true;
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }

  receive(message: unknown): void {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(message) }));
  }

  /** the server went away (or never answered the handshake) */
  drop(): void {
    this.readyState = 3;
    this.onclose?.(new CloseEvent('close', { code: 1006 }));
  }
}

const CONFIG: WebsocketConfig = {
  silenceMs: 5000,
  initialBackoffMs: 500,
  maxBackoffMs: 4000,
  jitter: 0,
  connectTimeoutMs: 3000,
  unreachableAfter: 3,
};

function frame(videoId: number, n: number): { type: 'frame'; data: ProcessedFrameData } {
  return {
    type: 'frame',
    data: {
      video_id: videoId,
      frame_number: n,
      timestamp: n / 25,
      processed_frame: 'data:image/jpeg;base64,',
      roi_polygon: null,
      end_of_stream: false,
    },
  };
}

describe('WebsocketService', () => {
  let service: WebsocketService;

  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.all = [];
    TestBed.configureTestingModule({
      providers: [
        { provide: WEBSOCKET_FACTORY, useValue: (url: string) => new FakeSocket(url) },
        { provide: WEBSOCKET_URL, useValue: 'ws://test/ws/client/stream' },
        { provide: WEBSOCKET_CONFIG, useValue: CONFIG },
      ],
    });
    service = TestBed.inject(WebsocketService);
  });

  afterEach(() => {
    TestBed.resetTestingModule();
    vi.useRealTimers();
  });

  it('connects on the first channel and subscribes once open', () => {
    expect(service.state()).toBe('idle');
    const received: ProcessedFrameData[] = [];
    service.frames(7).subscribe((f) => received.push(f));
    expect(FakeSocket.all.length).toBe(1);
    expect(FakeSocket.last.url).toBe('ws://test/ws/client/stream');
    expect(service.state()).toBe('connecting');
    FakeSocket.last.open();
    expect(service.state()).toBe('open');
    expect(FakeSocket.last.sent).toEqual([{ action: 'subscribe', channel: 'processed_frame_7' }]);
    FakeSocket.last.receive(frame(7, 1));
    FakeSocket.last.receive(frame(8, 1)); // another video's channel: not ours
    expect(received.map((f) => f.frame_number)).toEqual([1]);
  });

  it('shares one socket and one hub subscription between observers', () => {
    const a = service.frames(1).subscribe();
    const b = service.frames(1).subscribe();
    const analytics: AnalyticsData[] = [];
    const c = service.analytics(1).subscribe((m) => analytics.push(m));
    FakeSocket.last.open();
    expect(FakeSocket.all.length).toBe(1);
    expect(FakeSocket.last.sent).toEqual([
      { action: 'subscribe', channel: 'processed_frame_1' },
      { action: 'subscribe', channel: 'analytics_metrics_1' },
    ]);
    a.unsubscribe();
    expect(FakeSocket.last.sent.length).toBe(2);
    b.unsubscribe();
    expect(FakeSocket.last.sent[2]).toEqual({
      action: 'unsubscribe',
      channel: 'processed_frame_1',
    });
    FakeSocket.last.receive({
      type: 'analytics',
      data: {
        video_id: 1,
        frame_number: 3,
        timestamp: 0.1,
        stats: { total_vehicles: 2, speeding_count: 0, current_in_roi: 1 },
        speeding_vehicles: [],
      },
    });
    expect(analytics[0].stats.total_vehicles).toBe(2);
    c.unsubscribe();
  });

  it('reports hub errors', () => {
    const errors: string[] = [];
    service.errors$.subscribe((e) => errors.push(e));
    service.frames(1).subscribe();
    FakeSocket.last.open();
    FakeSocket.last.receive({ type: 'error', message: "unknown channel 'x'" });
    FakeSocket.last.receive('not json at all');
    expect(errors).toEqual(["unknown channel 'x'"]);
  });

  it('reconnects with exponential backoff and resubscribes every channel', () => {
    service.frames(3).subscribe();
    service.analytics(3).subscribe();
    FakeSocket.last.open();
    FakeSocket.last.receive(frame(3, 0));
    FakeSocket.last.drop();
    expect(service.state()).toBe('reconnecting');
    expect(FakeSocket.all.length).toBe(1);

    vi.advanceTimersByTime(499);
    expect(FakeSocket.all.length).toBe(1);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all.length).toBe(2); // after 500 ms
    FakeSocket.last.drop(); // backend still down: handshake refused
    expect(service.state()).toBe('reconnecting');
    vi.advanceTimersByTime(999);
    expect(FakeSocket.all.length).toBe(2);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all.length).toBe(3); // after 1000 ms
    FakeSocket.last.drop();
    vi.advanceTimersByTime(2000);
    expect(FakeSocket.all.length).toBe(4); // after 2000 ms
    FakeSocket.last.drop();
    expect(service.state()).toBe('unreachable'); // three attempts in a row never opened
    vi.advanceTimersByTime(4000);
    expect(FakeSocket.all.length).toBe(5);
    FakeSocket.last.drop();
    vi.advanceTimersByTime(4000); // capped at maxBackoffMs
    expect(FakeSocket.all.length).toBe(6);

    FakeSocket.last.open();
    expect(service.state()).toBe('open');
    expect(FakeSocket.last.sent).toEqual([
      { action: 'subscribe', channel: 'processed_frame_3' },
      { action: 'subscribe', channel: 'analytics_metrics_3' },
    ]);
    expect(service.reconnects()).toBe(5);
  });

  it('abandons a handshake that never completes', () => {
    service.frames(1).subscribe();
    expect(FakeSocket.all.length).toBe(1);
    vi.advanceTimersByTime(3000);
    expect(FakeSocket.all[0].closed).toBe(true);
    expect(service.state()).toBe('reconnecting');
    vi.advanceTimersByTime(500);
    expect(FakeSocket.all.length).toBe(2);
  });

  it('takes a silent connection as dead while a stream runs, and reconnects', () => {
    const received: number[] = [];
    service.frames(5).subscribe((f) => received.push(f.frame_number));
    service.expectTraffic(true);
    const first = FakeSocket.last;
    first.open();
    // nothing ever arrived yet (the processor may still be starting): no watchdog
    vi.advanceTimersByTime(20_000);
    expect(FakeSocket.all.length).toBe(1);

    first.receive(frame(5, 0));
    vi.advanceTimersByTime(4000);
    first.receive(frame(5, 1)); // re-arms
    vi.advanceTimersByTime(4999);
    expect(FakeSocket.all.length).toBe(1);
    vi.advanceTimersByTime(1); // 5 s of silence
    expect(first.closed).toBe(true);
    expect(service.state()).toBe('reconnecting');
    vi.advanceTimersByTime(500);
    expect(FakeSocket.all.length).toBe(2);
    const second = FakeSocket.last;
    second.open();
    expect(second.sent).toEqual([{ action: 'subscribe', channel: 'processed_frame_5' }]);
    // still silent after the reconnect: the next try waits longer
    vi.advanceTimersByTime(5000);
    expect(second.closed).toBe(true);
    vi.advanceTimersByTime(999);
    expect(FakeSocket.all.length).toBe(2);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all.length).toBe(3);
    FakeSocket.last.open();
    FakeSocket.last.receive(frame(5, 2));
    // a late message of an abandoned socket is ignored
    first.receive(frame(5, 99));
    expect(received).toEqual([0, 1, 2]);
    expect(service.state()).toBe('open');
  });

  it('keeps a quiet connection when no stream is expected', () => {
    service.frames(5).subscribe();
    FakeSocket.last.open();
    FakeSocket.last.receive(frame(5, 0));
    service.expectTraffic(false);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all.length).toBe(1);
    expect(service.state()).toBe('open');
  });

  it('stops the watchdog when the stream ends', () => {
    service.frames(5).subscribe();
    service.expectTraffic(true);
    FakeSocket.last.open();
    FakeSocket.last.receive(frame(5, 0));
    vi.advanceTimersByTime(3000);
    service.expectTraffic(false);
    vi.advanceTimersByTime(10_000);
    expect(FakeSocket.all.length).toBe(1);
  });

  it('does not reconnect once nobody holds a channel', () => {
    const sub = service.frames(2).subscribe();
    FakeSocket.last.open();
    sub.unsubscribe();
    FakeSocket.last.drop();
    expect(service.state()).toBe('idle');
    vi.advanceTimersByTime(10_000);
    expect(FakeSocket.all.length).toBe(1);
  });
});
