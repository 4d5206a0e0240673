import { DOCUMENT, Injectable, InjectionToken, OnDestroy, inject, signal } from '@angular/core';
import { Observable, Subject } from 'rxjs';

import {
  AnalyticsData,
  ProcessedFrameData,
  ServerMessage,
  analyticsChannel,
  frameChannel,
} from './models';

/** The part of the browser's `WebSocket` the service uses (a fake stands in for it in tests). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string) => SocketLike;

export const WEBSOCKET_FACTORY = new InjectionToken<SocketFactory>('WEBSOCKET_FACTORY', {
  providedIn: 'root',
  factory: () => (url: string) => new WebSocket(url),
});

/** `ws(s)://<same host>/ws/client/stream`: the backend serves the app and the hub on one origin. */
export const WEBSOCKET_URL = new InjectionToken<string>('WEBSOCKET_URL', {
  providedIn: 'root',
  factory: () => {
    const location = inject(DOCUMENT).location;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws/client/stream`;
  },
});

export interface WebsocketConfig {
  /** No message for this long while a stream runs: the connection is taken as dead (ms). */
  silenceMs: number;
  /** First reconnect delay (ms); doubled on each further attempt up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Random extra delay, as a fraction of the delay (0 in tests). */
  jitter: number;
  /** A connection attempt that has not opened after this long is abandoned (ms). */
  connectTimeoutMs: number;
  /** After this many attempts in a row that never opened, the state is `unreachable`. */
  unreachableAfter: number;
}

export const DEFAULT_WEBSOCKET_CONFIG: WebsocketConfig = {
  silenceMs: 5000,
  initialBackoffMs: 500,
  maxBackoffMs: 5000,
  jitter: 0.2,
  connectTimeoutMs: 5000,
  unreachableAfter: 3,
};

export const WEBSOCKET_CONFIG = new InjectionToken<WebsocketConfig>('WEBSOCKET_CONFIG', {
  providedIn: 'root',
  factory: () => DEFAULT_WEBSOCKET_CONFIG,
});

/**
 * idle: no connection wanted (no channel subscribed); connecting: first attempt; open;
 * reconnecting: lost, trying again with backoff; unreachable: several attempts failed in a row
 * (still retrying at the longest backoff).
 */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'unreachable';

const OPEN = 1;

/**
 * One WebSocket to the hub (`/ws/client/stream`) shared by the whole app, with typed observables
 * per channel (`frames(id)`: `processed_frame_{id}`, `analytics(id)`: `analytics_metrics_{id}`).
 *
 * A channel is subscribed on the hub while at least one observer holds it, and subscribed again
 * after every reconnect. Lost connections are retried with exponential backoff. While a stream is
 * expected to run (`expectTraffic(true)`) and has already delivered something, a watchdog takes
 * `silenceMs` without any message as a dead connection (a half-open TCP connection never
 * reports a close) and reconnects.
 */
@Injectable({ providedIn: 'root' })
export class WebsocketService implements OnDestroy {
  private readonly factory = inject(WEBSOCKET_FACTORY);
  private readonly url = inject(WEBSOCKET_URL);
  private readonly config = inject(WEBSOCKET_CONFIG);

  private readonly stateSignal = signal<ConnectionState>('idle');
  private readonly lastMessageSignal = signal<number | null>(null);
  private readonly reconnectsSignal = signal(0);
  /** Connection state for banners. */
  readonly state = this.stateSignal.asReadonly();
  /** `Date.now()` of the last message received. */
  readonly lastMessageAt = this.lastMessageSignal.asReadonly();
  /** Reconnects so far (after a close, an error or a silent connection). */
  readonly reconnects = this.reconnectsSignal.asReadonly();

  private readonly errorSubject = new Subject<string>();
  /** `{"type": "error"}` messages of the hub (bad channel, unknown video …). */
  readonly errors$ = this.errorSubject.asObservable();

  private readonly subjects = new Map<string, Subject<unknown>>();
  private readonly refs = new Map<string, number>();
  private socket: SocketLike | null = null;
  private opened = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private watchdogTimer: ReturnType<typeof setTimeout> | null = null;
  /** reconnect attempts since the last proof of life (a message); drives the backoff */
  private attempt = 0;
  /** attempts in a row that never opened */
  private connectFailures = 0;
  private expecting = false;
  private trafficSeen = false;
  private destroyed = false;

  /** Frames of `processed_frame_{videoId}`. */
  frames(videoId: number): Observable<ProcessedFrameData> {
    return this.channel<ProcessedFrameData>(frameChannel(videoId));
  }

  /** Updates of `analytics_metrics_{videoId}`. */
  analytics(videoId: number): Observable<AnalyticsData> {
    return this.channel<AnalyticsData>(analyticsChannel(videoId));
  }

  /** Messages of one hub channel; subscribing holds the channel, unsubscribing releases it. */
  channel<T>(name: string): Observable<T> {
    return new Observable<T>((subscriber) => {
      const subscription = (this.subjectFor(name) as Subject<T>).subscribe(subscriber);
      this.hold(name);
      return () => {
        subscription.unsubscribe();
        this.release(name);
      };
    });
  }

  /**
   * Tell the service whether a stream is running (frames are expected). Turns the silence
   * watchdog on once the first message has arrived, and off.
   */
  expectTraffic(expecting: boolean): void {
    if (expecting && !this.expecting) {
      this.trafficSeen = false;
    }
    this.expecting = expecting;
    this.armWatchdog();
  }

  ngOnDestroy(): void {
    this.destroyed = true;
    this.clearTimers();
    this.dropSocket();
    this.errorSubject.complete();
    this.subjects.forEach((s) => s.complete());
  }

  // ---- channels ------------------------------------------------------------------------------

  private subjectFor(name: string): Subject<unknown> {
    let subject = this.subjects.get(name);
    if (!subject) {
      subject = new Subject<unknown>();
      this.subjects.set(name, subject);
    }
    return subject;
  }

  private hold(name: string): void {
    const count = this.refs.get(name) ?? 0;
    this.refs.set(name, count + 1);
    if (count === 0) {
      this.send({ action: 'subscribe', channel: name });
    }
    this.ensureConnected();
  }

  private release(name: string): void {
    const count = this.refs.get(name) ?? 0;
    if (count <= 1) {
      this.refs.delete(name);
      this.send({ action: 'unsubscribe', channel: name });
    } else {
      this.refs.set(name, count - 1);
    }
    if (this.refs.size === 0) {
      this.armWatchdog();
    }
  }

  private send(message: object): void {
    if (this.socket && this.opened && this.socket.readyState === OPEN) {
      try {
        this.socket.send(JSON.stringify(message));
      } catch {
        // a socket closing under us: the reconnect resubscribes
      }
    }
  }

  // ---- connection ----------------------------------------------------------------------------

  private ensureConnected(): void {
    if (this.destroyed || this.socket || this.reconnectTimer) {
      return;
    }
    this.connect();
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.destroyed || this.refs.size === 0) {
      this.stateSignal.set('idle');
      return;
    }
    if (this.attempt === 0) {
      this.stateSignal.set('connecting');
    }
    let socket: SocketLike;
    try {
      socket = this.factory(this.url);
    } catch {
      this.connectFailures++;
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.opened = false;
    socket.onopen = () => this.onOpen(socket);
    socket.onmessage = (event) => this.onMessage(socket, event);
    socket.onerror = () => this.onLost(socket);
    socket.onclose = () => this.onLost(socket);
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.socket === socket && !this.opened) {
        this.onLost(socket);
      }
    }, this.config.connectTimeoutMs);
  }

  private onOpen(socket: SocketLike): void {
    if (socket !== this.socket) {
      return;
    }
    this.opened = true;
    this.connectFailures = 0;
    if (!this.expecting) {
      this.attempt = 0;
    }
    this.clearConnectTimer();
    this.stateSignal.set('open');
    for (const channel of this.refs.keys()) {
      this.send({ action: 'subscribe', channel });
    }
    this.armWatchdog();
  }

  private onMessage(socket: SocketLike, event: MessageEvent): void {
    if (socket !== this.socket) {
      return;
    }
    const receivedAt = performance.now();
    this.lastMessageSignal.set(Date.now());
    this.attempt = 0;
    let message: ServerMessage;
    try {
      message = JSON.parse(typeof event.data === 'string' ? event.data : String(event.data));
    } catch {
      return;
    }
    switch (message.type) {
      case 'frame':
        this.trafficSeen = true;
        message.data.received_at = receivedAt;
        this.subjects.get(frameChannel(message.data.video_id))?.next(message.data);
        break;
      case 'analytics':
        this.trafficSeen = true;
        this.subjects.get(analyticsChannel(message.data.video_id))?.next(message.data);
        break;
      case 'error':
        this.errorSubject.next(message.message);
        break;
      default:
        break;
    }
    this.armWatchdog();
  }

  /** Close, error, connect timeout or silence: forget the socket and try again later. */
  private onLost(socket: SocketLike): void {
    if (socket !== this.socket) {
      return;
    }
    if (!this.opened) {
      this.connectFailures++;
    }
    this.dropSocket();
    if (this.destroyed) {
      return;
    }
    if (this.refs.size === 0) {
      this.stateSignal.set('idle');
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.attempt++;
    this.reconnectsSignal.update((n) => n + 1);
    const base = Math.min(
      this.config.maxBackoffMs,
      this.config.initialBackoffMs * 2 ** (this.attempt - 1),
    );
    const delay = base * (1 + this.config.jitter * Math.random());
    this.stateSignal.set(
      this.connectFailures >= this.config.unreachableAfter ? 'unreachable' : 'reconnecting',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private dropSocket(): void {
    this.clearConnectTimer();
    this.clearWatchdog();
    const socket = this.socket;
    this.socket = null;
    this.opened = false;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
  }

  // ---- watchdog ------------------------------------------------------------------------------

  private armWatchdog(): void {
    this.clearWatchdog();
    if (!this.expecting || !this.trafficSeen || !this.opened || this.refs.size === 0) {
      return;
    }
    const socket = this.socket;
    this.watchdogTimer = setTimeout(() => {
      this.watchdogTimer = null;
      if (socket && socket === this.socket) {
        this.onLost(socket);
      }
    }, this.config.silenceMs);
  }

  private clearWatchdog(): void {
    if (this.watchdogTimer !== null) {
      clearTimeout(this.watchdogTimer);
      this.watchdogTimer = null;
    }
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private clearTimers(): void {
    this.clearWatchdog();
    this.clearConnectTimer();
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
  }
}
