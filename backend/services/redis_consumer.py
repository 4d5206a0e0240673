"""Redis consumer bridge: ``processed-frames`` -> backend WebSocket ingest (DESIGN.md, Data flow 6).

Run as ``python -m backend.services.redis_consumer`` (settings from the environment / ``.env``:
``REDIS_HOST``, ``REDIS_PORT``, ``REDIS_PASSWORD``, ``BACKEND_URL``, ``INTERNAL_TOKEN`` (unset: the
one kept in ``SECRETS_DIR/internal_token``, as the backend reads it), and optionally
``REDIS_CONSUMER_NAME``, default ``{hostname}-{pid}``).

For each entry of the ``processed-frames`` stream, read through the consumer group
``redis-consumer-group`` in stream order:

- the live backend instances (the registry every backend keeps with a heartbeat:
  ``backend.services.instances``) and the subscription sets of the videos in the batch (which
  instances have a viewer of each channel) are read in one pipeline (``[SUBSCRIPTION-CHECK]``);
- where someone watches ``processed_frame_{id}`` the frame goes to ``/ws/backend/processed``;
  where someone watches ``analytics_metrics_{id}`` the stats and the speeding vehicles (those
  the processor flagged: ``speeding`` true, never an instantaneous speed against a limit) go to
  ``/ws/backend/analytics``, of every live instance that has such a subscriber, at that instance's
  own address (one pair of ingest connections per instance, written concurrently; issue 18:
  several backends behind one address); nothing is sent for nobody, end of stream included. With
  no instance registered (a backend of before the registry, or all of them restarting) the
  bridge falls back to ``BACKEND_URL`` where any subscription is left;
- the entry is XACKed once every write it needed has completed. A malformed entry is logged and
  ACKed (it never blocks the stream). While an instance is unreachable the bridge retries the
  same entry with backoff and ACKs nothing, reading the registry and the subscriptions again
  before each try: a backend that restarts loses nothing, and one that died drops out once its
  registration lapses (``streams.BACKEND_INSTANCE_TTL_S``), the entries from there on going to
  the instances its viewers reconnected to.

After a crash (kill -9) the entries the dead consumer had read but not ACKed stay in the group's
pending list; on start (and every ``claim_interval_s``) the bridge claims those idle for
``claim_min_idle_s`` with XAUTOCLAIM and delivers them, in stream order, before reading new ones.
Delivery is therefore at least once: an entry whose write completed just before a crash is sent
again after the restart; the hub drops such repeats (``hub.RepeatFilter``), so clients get it once.

Redis going away is retried with backoff (one clear log line per outage). SIGTERM / SIGINT end the
bridge after the entry in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import Field, ValidationError, model_validator
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from backend.schemas import AnalyticsIngest, ProcessedFrameIngest
from backend.services.instances import parse_live
from contracts import streams
from contracts.messages import ProcessedFrame
from contracts.settings import CommonSettings, resolve_token

log = logging.getLogger("backend.redis_consumer")

TAG = "[REDIS-CONSUMER]"
CHECK = "[SUBSCRIPTION-CHECK]"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# XREADGROUP's reply as this client gets it (RESP2, bytes): [(stream, [(id, {field: value}), ...])]
# (redis-py types the RESP3 dict form too).
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class ConsumerSettings(CommonSettings):
    """The bridge's settings: REDIS_HOST, REDIS_PORT, BACKEND_URL and INTERNAL_TOKEN are the
    shared ones (``CommonSettings``), the ``REDIS_CONSUMER_*`` names its own."""

    REDIS_CONSUMER_NAME: str = ""  # empty: "{hostname}-{pid}"
    REDIS_CONSUMER_BATCH: int = Field(default=32, ge=1)
    REDIS_CONSUMER_BLOCK_MS: int = Field(default=1000, ge=1)
    # Pending entries of another consumer idle this long are taken over (that one is dead).
    REDIS_CONSUMER_CLAIM_IDLE_S: float = Field(default=10.0, gt=0)
    REDIS_CONSUMER_CLAIM_INTERVAL_S: float = Field(default=5.0, gt=0)
    # Entries of processed-frames delivered and acked are trimmed once older than this: a camera
    # streams for days, and its run's clean-up (which removes the rest) comes only when it stops.
    PROCESSED_RETENTION_S: float = Field(default=120.0, gt=0)

    @property
    def consumer_name(self) -> str:
        return self.REDIS_CONSUMER_NAME or f"{socket.gethostname()}-{os.getpid()}"

    @model_validator(mode="after")
    def _internal_token(self) -> ConsumerSettings:
        """As the backend's: the token set (long, no example value) or the one kept in SECRETS_DIR."""
        self.INTERNAL_TOKEN = resolve_token("INTERNAL_TOKEN", self.INTERNAL_TOKEN, self.SECRETS_DIR)
        return self


def ws_base(backend_url: str) -> str:
    """``http://host:8686`` -> ``ws://host:8686`` (``https`` -> ``wss``; ``ws(s)://`` kept)."""
    url = backend_url.strip().rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            return ws + url[len(http) :]
    if url.startswith(("ws://", "wss://")):
        return url
    return "ws://" + url


class Stopping(Exception):
    """The bridge was asked to stop while it waited (for the backend or for Redis)."""


class IngestLink:
    """One WebSocket client connection to an ingest endpoint, reopened on demand."""

    def __init__(self, url: str, token: str, name: str) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.conn: WebSocketClientConnection | None = None
        self.connects = 0
        self.down_since: float | None = None  # failing since (monotonic), None while it works

    async def connect(self) -> None:
        request = HTTPRequest(
            self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            connect_timeout=5,
            request_timeout=10,
        )
        box: list[WebSocketClientConnection] = []
        conn = await websocket_connect(
            request,
            on_message_callback=lambda message: self._on_message(box[0] if box else None, message),
            max_message_size=MAX_MESSAGE_BYTES,
            ping_interval=20,
            ping_timeout=20,
        )
        box.append(conn)
        self.conn = conn
        self.connects += 1
        log.info("%s connected to %s", TAG, self.url)

    def _on_message(self, conn: WebSocketClientConnection | None, message: str | bytes | None) -> None:
        if message is None:  # closed by the backend (restart, shutdown) or the network
            if conn is not None and self.conn is conn:
                self.conn = None
                log.warning("%s connection to %s closed", TAG, self.url)
            return
        # The backend only answers to refuse a message it could not validate.
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        log.warning("%s backend refused a %s message: %s", TAG, self.name, text[:300])

    async def send(self, text: str) -> None:
        """One write; raises when the connection is (or turns out to be) down."""
        if self.conn is None:
            await self.connect()
        assert self.conn is not None
        await self.conn.write_message(text)

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


DELIVERY_ERRORS = (WebSocketClosedError, StreamClosedError, HTTPClientError, OSError, TimeoutError)
# A write not done by then counts as failed (an instance gone without a reset: its host vanished).
WRITE_TIMEOUT_S = 10.0
# The target of the fallback (no instance registered): BACKEND_URL.
FALLBACK = ""


@dataclass
class Target:
    """One backend instance the bridge delivers to: its two ingest connections."""

    name: str
    base: str  # ws://host:port
    frames: IngestLink
    analytics: IngestLink

    @classmethod
    def of(cls, name: str, base: str, token: str) -> Target:
        base = base.rstrip("/")
        return cls(
            name,
            base,
            IngestLink(f"{base}/ws/backend/processed", token, "processed_frame"),
            IngestLink(f"{base}/ws/backend/analytics", token, "analytics_update"),
        )

    def link(self, kind: str) -> IngestLink:
        return self.frames if kind == "frames" else self.analytics

    def drop(self) -> None:
        self.frames.drop()
        self.analytics.drop()


@dataclass(frozen=True)
class Route:
    """Where one video's entries go: the instances (names; ``FALLBACK`` for BACKEND_URL) that
    get its frames and those that get its analytics."""

    frames: frozenset[str] = frozenset()
    analytics: frozenset[str] = frozenset()

    def writes(self) -> list[tuple[str, str]]:
        return sorted({(n, "frames") for n in self.frames} | {(n, "analytics") for n in self.analytics})


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass
class Counters:
    frames_sent: int = 0
    analytics_sent: int = 0
    not_subscribed: int = 0
    malformed: int = 0
    acked: int = 0
    reclaimed: int = 0
    by_video: dict[int, Route] = field(default_factory=dict)  # last subscription state


class RedisConsumer:
    """The bridge. ``run()`` until ``stop()``; every piece is also callable on its own (tests)."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        backend_ws: str,
        token: str,
        consumer: str,
        batch: int = 32,
        block_ms: int = 1000,
        claim_min_idle_s: float = 10.0,
        claim_interval_s: float = 5.0,
        stream: str = streams.PROCESSED_FRAMES,
        group: str = streams.REDIS_CONSUMER_GROUP,
        max_backoff_s: float = 5.0,
        retention_s: float = 120.0,
        instances_key: str = streams.BACKEND_INSTANCES_KEY,
        instance_urls_key: str = streams.BACKEND_INSTANCE_URL_KEY,
    ) -> None:
        self.redis = redis
        self.retention_ms = int(retention_s * 1000)
        self._last_trim = 0.0
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_min_idle_ms = int(claim_min_idle_s * 1000)
        self.claim_interval_s = claim_interval_s
        self.stream = stream
        self.group = group
        self.max_backoff_s = max_backoff_s
        self.token = token
        # BACKEND_URL: the fallback while no instance is registered (its links kept as
        # ``frames`` / ``analytics``); the registered instances by name
        self.fallback = Target.of(FALLBACK, backend_ws, token)
        self.frames, self.analytics = self.fallback.frames, self.fallback.analytics
        self.targets: dict[str, Target] = {}
        self.instances_key = instances_key
        self.instance_urls_key = instance_urls_key
        self.counters = Counters()
        self._stopping = asyncio.Event()
        self._delivered_unacked: set[bytes] = set()  # delivered, XACK failed (Redis went away)
        self._last_claim = 0.0
        self._need_group = False
        self._last_stats = time.monotonic()
        self._stats_at_last_log: tuple[int, ...] = ()

    # ---- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or raise ``Stopping`` as soon as a stop is asked for."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self.stopping:
            raise Stopping

    async def run(self) -> None:
        log.info(
            "%s consumer %s on %s (group %s), backend %s",
            TAG,
            self.consumer,
            self.stream,
            self.group,
            self.frames.url.rsplit("/ws/", 1)[0],
        )
        try:
            await self._with_redis(self._start)
            while not self.stopping:
                await self._with_redis(self.step)
        except Stopping:
            pass
        finally:
            self.fallback.drop()
            for target in self.targets.values():
                target.drop()
            c = self.counters
            log.info(
                "%s stopped: %d frames and %d analytics sent, %d entries acked (%d not subscribed, "
                "%d malformed, %d reclaimed)",
                TAG,
                c.frames_sent,
                c.analytics_sent,
                c.acked,
                c.not_subscribed,
                c.malformed,
                c.reclaimed,
            )

    async def _with_redis(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action``; while Redis is unreachable retry it with backoff (one log per outage)."""
        backoff = 0.2
        down_since: float | None = None
        while True:
            try:
                if self._need_group:
                    await self.ensure_group()
                    self._need_group = False
                await action()
            except REDIS_DOWN as exc:
                # What this batch read stays pending here: deliver it first, before new entries.
                self._last_claim = 0.0
                if down_since is None:
                    down_since = time.monotonic()
                    log.error(
                        "%s Redis unavailable at %s (%s); retrying with backoff", TAG, self._redis_addr(), exc
                    )
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis restarted empty, or the stream was deleted: recreate and go on.
                log.warning("%s consumer group missing (%s); recreating it", TAG, exc)
                self._need_group = True
                self._last_claim = 0.0
                await self._sleep(0.05)
                continue
            if down_since is not None:
                log.info("%s Redis is back after %.1f s", TAG, time.monotonic() - down_since)
            return

    def _redis_addr(self) -> str:
        kwargs = self.redis.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    async def _start(self) -> None:
        await self.ensure_group()
        await self.recover(wait_for_dead=True)
        await self.forget_idle_consumers()

    # ---- Redis side --------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("%s created consumer group %s on %s", TAG, self.group, self.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self) -> None:
        """Claim stale entries now and then; read and deliver one batch of new entries."""
        if time.monotonic() - self._last_claim >= self.claim_interval_s:
            await self.recover()
        reply = cast(
            StreamReply,
            await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=self.block_ms
            ),
        )
        for _stream, entries in reply or []:
            await self.handle(entries)
        if time.monotonic() - self._last_trim >= min(30.0, self.retention_ms / 4000):
            await self.trim_delivered()
        self._log_stats()

    async def trim_delivered(self, now_ms: int | None = None) -> None:
        """``XTRIM MINID`` the entries older than the retention that the group has been delivered
        and acked (never one still pending or not yet read): the stream stays bounded while a
        camera streams for days."""
        self._last_trim = time.monotonic()
        cutoff = (int(time.time() * 1000) if now_ms is None else now_ms) - self.retention_ms
        groups = await self.redis.xinfo_groups(self.stream)
        delivered = next(
            (
                streams.parse_stream_id(g["last-delivered-id"])
                for g in groups
                if streams.text(g["name"]) == self.group
            ),
            None,
        )
        if delivered is None:
            return
        pending = await self.redis.xpending(self.stream, self.group)
        bound = min((cutoff, 0), (delivered[0], delivered[1] + 1))
        if pending and pending.get("pending"):
            bound = min(bound, streams.parse_stream_id(pending["min"]))
        if bound[0] > 0:
            await self.redis.xtrim(self.stream, minid=f"{bound[0]}-{bound[1]}", approximate=False)

    def _log_stats(self, every_s: float = 60.0) -> None:
        if time.monotonic() - self._last_stats < every_s:
            return
        self._last_stats = time.monotonic()
        c = self.counters
        now = (c.frames_sent, c.analytics_sent, c.acked, c.not_subscribed, c.malformed, c.reclaimed)
        if now != self._stats_at_last_log:
            self._stats_at_last_log = now
            log.info(
                "%s totals: %d frames, %d analytics sent; %d acked, %d not subscribed, %d malformed, "
                "%d reclaimed",
                TAG,
                *now,
            )

    async def claim_stale(self) -> int:
        """XAUTOCLAIM every entry idle >= min idle into this consumer (cursor loop to 0-0)."""
        cursor: bytes | str = "0-0"
        claimed = 0
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_min_idle_ms, cursor, count=100
            )
            cursor, entries = reply[0], reply[1]
            claimed += sum(1 for entry_id, _ in entries if entry_id is not None)
            claimed += len(reply[2]) if len(reply) > 2 and reply[2] else 0  # Redis 7: deleted ids
            if cursor in (b"0-0", "0-0"):
                return claimed

    async def drain_own_pending(self) -> int:
        """Deliver (in stream order) what this consumer has read but not ACKed."""
        last: bytes | str = "0"
        handled = 0
        while True:
            reply = cast(
                StreamReply,
                await self.redis.xreadgroup(self.group, self.consumer, {self.stream: last}, count=self.batch),
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return handled
            await self.handle(entries)
            handled += len(entries)
            last = entries[-1][0]

    async def recover(self, *, wait_for_dead: bool = False) -> None:
        """Take over stale pending entries and deliver them before anything newer.

        With ``wait_for_dead`` (start-up), entries another consumer holds are waited for until
        they are claimable (at most the min idle time and a bit), so that after a kill -9 and an
        immediate restart the old entries still go out before the new ones.
        """
        deadline = time.monotonic() + self.claim_min_idle_ms / 1000 + 2.0
        waiting_for = await self._held_by_others() if wait_for_dead else set()
        while True:
            claimed = await self.claim_stale()
            handled = await self.drain_own_pending()
            if claimed:
                self.counters.reclaimed += claimed
                log.info("%s reclaimed %d stale pending entries (XAUTOCLAIM)", TAG, claimed)
            elif handled:
                log.info("%s delivered %d entries left pending by this consumer", TAG, handled)
            self._last_claim = time.monotonic()
            if not waiting_for or time.monotonic() >= deadline:
                return
            # A live consumer ACKs its entries within moments; a dead one's stay until claimable.
            waiting_for &= await self._held_by_others()
            if not waiting_for:
                return
            log.info(
                "%s %d entries pending at another consumer (dead?); waiting until they are claimable",
                TAG,
                len(waiting_for),
            )
            await self._sleep(min(0.5, max(0.05, deadline - time.monotonic())))

    async def _held_by_others(self, limit: int = 10_000) -> set[bytes]:
        """Ids of the entries other consumers of the group have read and not ACKed."""
        rows = await self.redis.xpending_range(self.stream, self.group, min="-", max="+", count=limit)
        me = self.consumer.encode()
        return {_bytes(r["message_id"]) for r in rows if _bytes(r["consumer"]) != me}

    async def forget_idle_consumers(self, idle_s: float = 3600.0) -> None:
        """Drop consumers with nothing pending and idle for long (old hostname-pid names)."""
        for info in await self.redis.xinfo_consumers(self.stream, self.group):
            name = _bytes(info["name"])
            if (
                name != self.consumer.encode()
                and int(info["pending"]) == 0
                and int(info["idle"]) > idle_s * 1000
            ):
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
                log.info("%s removed idle consumer %s (nothing pending)", TAG, streams.text(name))

    async def routes(self, video_ids: list[int]) -> dict[int, Route]:
        """Per video, the instances to deliver its frames and its analytics to: the live ones
        (registered, not lapsed) in the channel's subscription set; with no instance registered,
        ``FALLBACK`` where the set has anyone. One pipeline: the registry and every set."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.instances_key, now, "+inf")
            pipe.hgetall(self.instance_urls_key)
            for v in video_ids:
                pipe.zrangebyscore(streams.frame_subscription_key(v), now, "+inf")
                pipe.zrangebyscore(streams.analytics_subscription_key(v), now, "+inf")
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, REDIS_DOWN):
                raise reply
        live = self._update_targets(replies[0], replies[1])

        def members(reply: Any) -> frozenset[str]:
            if isinstance(reply, ResponseError):  # a key of the older format ("true"): someone
                return frozenset(live) if live else frozenset({FALLBACK})
            names = {streams.text(n) for n in reply or []}
            if not live:
                return frozenset({FALLBACK}) if names else frozenset()
            return frozenset(names & live)

        result = {}
        for i, video_id in enumerate(video_ids):
            route = Route(members(replies[2 + 2 * i]), members(replies[3 + 2 * i]))
            result[video_id] = route
            if self.counters.by_video.get(video_id) != route:
                self.counters.by_video[video_id] = route
                where = sorted(route.frames | route.analytics)
                log.info(
                    "%s video %d: frames %s, analytics %s%s",
                    CHECK,
                    video_id,
                    "subscribed" if route.frames else "not subscribed",
                    "subscribed" if route.analytics else "not subscribed",
                    f" (instances {', '.join(where)})" if where and where != [FALLBACK] else "",
                )
        return result

    def _update_targets(self, names: Any, urls: Any) -> set[str]:
        """Keep one ``Target`` per live instance (new ones made, gone or moved ones dropped)."""
        live = parse_live(names, urls)
        for name in list(self.targets):
            target = self.targets[name]
            if live.get(name) is None or ws_base(live[name]) != target.base:
                target.drop()
                del self.targets[name]
                log.info("%s backend instance %s left (%s)", TAG, name, target.base)
        for name, url in live.items():
            if name not in self.targets:
                self.targets[name] = Target.of(name, ws_base(url), self.token)
                log.info("%s backend instance %s at %s", TAG, name, self.targets[name].base)
        return set(live)

    # ---- delivery ----------------------------------------------------------------------------

    async def handle(self, entries: list[tuple[Any, Any]]) -> None:
        """Deliver and ACK a batch, one entry after the other in stream order."""
        parsed: list[tuple[bytes, ProcessedFrame | None]] = []
        for entry_id, fields in entries:
            if entry_id is None:  # Redis 6.2 XAUTOCLAIM: entry deleted (trimmed) meanwhile
                continue
            if not fields:  # pending, but trimmed from the stream meanwhile (e.g. by cleanup)
                log.warning("%s entry %s no longer in the stream; acked", TAG, streams.text(entry_id))
                parsed.append((entry_id, None))
                continue
            try:
                frame = ProcessedFrame.from_fields(fields)
            except (ValidationError, ValueError, TypeError, KeyError) as exc:
                log.error(
                    "%s malformed entry %s skipped and acked: %s", TAG, streams.text(entry_id), _short(exc)
                )
                self.counters.malformed += 1
                frame = None
            parsed.append((entry_id, frame))
        routes = await self.routes(sorted({f.video_id for _, f in parsed if f is not None}))
        for entry_id, frame in parsed:
            if frame is not None and entry_id not in self._delivered_unacked:
                await self.deliver(entry_id, frame, routes[frame.video_id])
            self._delivered_unacked.add(entry_id)
            await self.redis.xack(self.stream, self.group, entry_id)
            self._delivered_unacked.discard(entry_id)
            self.counters.acked += 1

    async def deliver(self, entry_id: bytes, frame: ProcessedFrame, route: Route) -> None:
        """Write the entry to every instance of its route, concurrently. Writes that fail are
        tried again with backoff (the entry stays in hand, un-ACKed), the route read again before
        each try: an instance that died drops out once its registration lapses, one its viewers
        moved to comes in."""
        if not route.writes():
            self.counters.not_subscribed += 1
            log.debug("%s video %d frame %d: nobody subscribed", CHECK, frame.video_id, frame.frame_number)
            return
        texts: dict[str, str] = {}

        def text_of(kind: str) -> str:
            if kind not in texts:
                ingest = ProcessedFrameIngest if kind == "frames" else AnalyticsIngest
                texts[kind] = ingest.from_processed(frame).model_dump_json()
            return texts[kind]

        done: set[tuple[str, str]] = set()
        backoff = 0.1
        last_touch = time.monotonic()
        while True:
            if self.stopping:
                raise Stopping  # leave the entry pending: the next start delivers it
            # (an instance that left since the route was read gets nothing more)
            todo = [w for w in route.writes() if w not in done and (w[0] == FALLBACK or w[0] in self.targets)]
            results = await asyncio.gather(
                *(self._write(name, kind, text_of(kind)) for name, kind in todo), return_exceptions=True
            )
            failed = False
            for write, result in zip(todo, results, strict=True):
                if result is None:
                    done.add(write)
                elif isinstance(result, DELIVERY_ERRORS):
                    failed = True
                elif isinstance(result, BaseException):
                    raise result
            if not failed:
                break
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
            if time.monotonic() - last_touch > self.claim_min_idle_ms / 2000:
                # Still ours: reset the idle time so that no other consumer claims it.
                await self.redis.xclaim(self.stream, self.group, self.consumer, 0, [entry_id], justid=True)
                last_touch = time.monotonic()
            route = (await self.routes([frame.video_id]))[frame.video_id]
        if any(kind == "frames" for _, kind in done):
            self.counters.frames_sent += 1
        if any(kind == "analytics" for _, kind in done):
            self.counters.analytics_sent += 1
        if frame.end_of_stream:
            log.info(
                "%s video %d: end of stream forwarded (frame %d)", TAG, frame.video_id, frame.frame_number
            )

    async def _write(self, name: str, kind: str, text: str) -> None:
        """One write to one instance's ingest link; raises (a ``DELIVERY_ERRORS``) on failure,
        the link dropped for the next try to reconnect. Logs the link going down and coming back."""
        target = self.fallback if name == FALLBACK else self.targets[name]
        link = target.link(kind)
        try:
            await asyncio.wait_for(link.send(text), WRITE_TIMEOUT_S)
        except DELIVERY_ERRORS as exc:
            link.drop()
            if link.down_since is None:
                link.down_since = time.monotonic()
                hint = " (check INTERNAL_TOKEN)" if getattr(exc, "code", None) in (401, 403) else ""
                log.warning("%s backend %s unavailable: %s%s; retrying", TAG, link.url, _short(exc), hint)
            raise
        if link.down_since is not None:
            log.info("%s backend %s back after %.1f s", TAG, link.url, time.monotonic() - link.down_since)
            link.down_since = None


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]


def redis_client(host: str, port: int, *, block_ms: int = 1000, password: str = "") -> aioredis.Redis:
    """Bytes replies (JPEGs); only two quick retries inside redis-py, so that an outage reaches
    the bridge's own backoff loop and its log line within about a second. ``password``: Redis
    AUTH (REDIS_PASSWORD; empty: none)."""
    return aioredis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_connect_timeout=5,
        socket_timeout=block_ms / 1000 + 10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


def build_consumer(settings: ConsumerSettings) -> RedisConsumer:
    return RedisConsumer(
        redis=redis_client(
            settings.REDIS_HOST,
            settings.REDIS_PORT,
            block_ms=settings.REDIS_CONSUMER_BLOCK_MS,
            password=settings.REDIS_PASSWORD,
        ),
        backend_ws=ws_base(settings.BACKEND_URL),
        token=settings.INTERNAL_TOKEN,
        consumer=settings.consumer_name,
        batch=settings.REDIS_CONSUMER_BATCH,
        block_ms=settings.REDIS_CONSUMER_BLOCK_MS,
        claim_min_idle_s=settings.REDIS_CONSUMER_CLAIM_IDLE_S,
        claim_interval_s=settings.REDIS_CONSUMER_CLAIM_INTERVAL_S,
        retention_s=settings.PROCESSED_RETENTION_S,
    )


async def serve(settings: ConsumerSettings) -> None:
    consumer = build_consumer(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
    finally:
        await consumer.redis.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(ConsumerSettings()))


if __name__ == "__main__":
    main()
