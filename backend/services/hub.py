"""Channel hub: routes ingest messages to WebSocket subscribers (DESIGN.md, Data flow 7).

Each client has its own writer task and two queues: frames (bounded, the oldest dropped when
a client falls behind) and control/analytics (never dropped; a client that lets more than
``analytics_limit`` pile up is disconnected rather than silently losing any). Messages the
hub already broadcast are dropped (``RepeatFilter``, by ``run_id`` and frame number): the bridge
delivers at least once. A message is serialised once per broadcast and the same string is
queued for every subscriber, so a stalled client costs the others nothing but one deque append.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from backend.schemas import ANALYTICS_CHANNEL, FRAME_CHANNEL, parse_channel
from backend.services import metrics
from backend.services.subscriptions import SubscriptionCache

log = logging.getLogger("backend.hub")


class ClientQueue:
    """Outgoing queue of one client. ``send`` writes one text message (awaits the socket)."""

    def __init__(
        self,
        send: Callable[[bytes | str], Awaitable[None]],
        close: Callable[[], None],
        *,
        frame_limit: int,
        analytics_limit: int,
    ) -> None:
        self._send = send
        self._close = close
        self.frames: deque[bytes | str] = deque(maxlen=frame_limit)
        self.control: deque[bytes | str] = deque()
        self.analytics_limit = analytics_limit
        self.dropped_frames = 0
        self.channels: set[str] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._writer())

    def put_frame(self, text: bytes | str) -> bool:
        """Queue a frame; True when the oldest queued one was dropped to make room (the hub
        counts it)."""
        if self._closed:
            return False
        dropped = len(self.frames) == self.frames.maxlen
        if dropped:
            self.dropped_frames += 1
        self.frames.append(text)
        self._wake.set()
        return dropped

    def put_control(self, text: bytes | str) -> None:
        """Acks, errors and analytics: kept in order, never dropped."""
        if self._closed:
            return
        if len(self.control) >= self.analytics_limit:
            log.warning("[CLIENT-CHANNEL] client %d messages behind; disconnecting", len(self.control))
            self.stop()
            self._close()
            return
        self.control.append(text)
        self._wake.set()

    async def _writer(self) -> None:
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                while not self._closed and (self.control or self.frames):
                    text = self.control.popleft() if self.control else self.frames.popleft()
                    await self._send(text)
                    metrics.WS_MESSAGES_SENT.inc()
        except (WebSocketClosedError, StreamClosedError) as exc:  # on_close unregisters the client
            log.debug("[CLIENT-CHANNEL] writer stopped: %r", exc)
        finally:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def stop(self) -> None:
        self._closed = True
        self._wake.set()
        self.frames.clear()
        self.control.clear()


@dataclass
class _Position:
    """What the hub last broadcast on one channel: the run and the highest frame number in it."""

    run_id: str | None
    frame_number: int
    produced_at: float  # latest produced_at seen (the fallback for messages without run_id)
    earlier_runs: deque[str] = field(default_factory=lambda: deque(maxlen=RepeatFilter.EARLIER_RUNS))


class RepeatFilter:
    """Tells a message the hub has not broadcast yet from a repeat.

    The bridge delivers at least once: after a crash it resends what it had written but not
    ACKed. Every message of a stream run carries that run's ``run_id`` (the producer's Airflow
    dag run id), and within a run a video's frame numbers only grow (the bridge keeps stream
    order). So, per channel:

    - a ``run_id`` other than the channel's current run starts a new run: broadcast, and the
      frame-number memory starts again from it (a rerun begins again at frame 0);
    - within the current run, a frame number <= the last one broadcast is a resend: dropped;
    - a message of a run the channel already left (a late resend of an earlier run, after the
      next one started) is dropped too (the last ``EARLIER_RUNS`` runs are remembered).

    Messages without ``run_id`` (an older producer) fall back to ``produced_at``: new when the
    frame number is above the last one, or when produced after everything broadcast there before
    (a rerun's wall clock is later; a repeat carries the ``produced_at`` of its first delivery).
    """

    EARLIER_RUNS = 16

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], _Position] = {}
        self.repeats = 0

    def fresh(
        self,
        kind: str,
        video_id: int,
        frame_number: int,
        produced_at: float | None,
        run_id: str | None = None,
    ) -> bool:
        produced = produced_at if produced_at is not None else float("-inf")
        key = (kind, video_id)
        last = self._last.get(key)
        if last is None:
            self._last[key] = _Position(run_id, frame_number, produced)
            return True
        if run_id is not None and run_id != last.run_id:
            if run_id in last.earlier_runs:
                return self._repeat()
            if last.run_id is not None:
                last.earlier_runs.append(last.run_id)
            last.run_id, last.frame_number = run_id, frame_number
            last.produced_at = max(produced, last.produced_at)
            return True
        if run_id is not None:  # the channel's current run
            if frame_number <= last.frame_number:
                return self._repeat()
        elif frame_number <= last.frame_number and produced <= last.produced_at:
            return self._repeat()
        else:
            last.run_id = None  # id-less: the channel's run is no longer known by id
        last.frame_number = frame_number
        last.produced_at = max(produced, last.produced_at)
        return True

    def _repeat(self) -> bool:
        self.repeats += 1
        return False


class Hub:
    """Channels, clients and the hub's counters.

    The counters are the one source of truth of both ``GET /api/websocket/status`` and
    ``/metrics`` (the application binds its hub to ``metrics.bind_hub``): ``dropped_frames``
    counts every frame dropped from a slow client's full queue since the backend started, whether
    or not that client is still connected; ``repeats.repeats`` every ingest message dropped as a
    repeat. Frames still queued for a client when it disconnects are not counted.
    """

    def __init__(self, subscriptions: SubscriptionCache | None) -> None:
        self.subscriptions = subscriptions
        self.repeats = RepeatFilter()
        self.dropped_frames = 0
        self.channels: defaultdict[str, set[ClientQueue]] = defaultdict(set)
        self.clients: set[ClientQueue] = set()
        self.ingest_connections: defaultdict[str, int] = defaultdict(int)
        # (beyond the seed) per video, the live thinning of its latest frame: stride, detected, skipped
        self.streams: dict[int, dict[str, int]] = {}

    def register(self, client: ClientQueue) -> None:
        self.clients.add(client)
        metrics.WS_CLIENTS.set(len(self.clients))

    async def subscribe(self, client: ClientQueue, channel: str) -> None:
        first = not self.channels.get(channel)
        self.channels[channel].add(client)
        client.channels.add(channel)
        if first:
            await self._sync(channel)

    async def unsubscribe(self, client: ClientQueue, channel: str) -> None:
        members = self.channels.get(channel)
        client.channels.discard(channel)
        if members is None or client not in members:
            return
        members.discard(client)
        if not members:
            del self.channels[channel]
            await self._sync(channel)

    async def remove(self, client: ClientQueue) -> None:
        client.stop()
        self.clients.discard(client)
        metrics.WS_CLIENTS.set(len(self.clients))
        for channel in list(client.channels):
            await self.unsubscribe(client, channel)

    async def _sync(self, channel: str) -> None:
        parsed = parse_channel(channel)
        if parsed is None or self.subscriptions is None:
            return
        kind, video_id = parsed
        await self.subscriptions.sync(kind, video_id, bool(self.channels.get(channel)))

    def active(self) -> list[tuple[str, int]]:
        return [p for p in (parse_channel(c) for c in self.channels) if p is not None]

    async def refresh(self) -> None:
        if self.subscriptions is not None:
            await self.subscriptions.refresh(self.active())

    def broadcast_frame(self, video_id: int, text: bytes | str) -> int:
        members = self.channels.get(f"{FRAME_CHANNEL}_{video_id}", ())
        for client in members:
            if client.put_frame(text):
                self.dropped_frames += 1
        return len(members)

    def broadcast_analytics(self, video_id: int, text: bytes | str) -> int:
        members = self.channels.get(f"{ANALYTICS_CHANNEL}_{video_id}", ())
        for client in members:
            client.put_control(text)
        return len(members)

    def note_frame(self, data: Any) -> None:
        """Remember the processing progress a frame message carries (its video's latest)."""
        self.streams[int(data.video_id)] = {
            "frame_number": int(data.frame_number),
            "detect_stride": int(data.detect_stride),
            "detected_frames": int(data.detected_frames),
            "skipped_frames": int(data.skipped_frames),
            "dropped_frames": int(data.dropped_frames),
            "detect_hz": data.detect_hz,
            "degraded": bool(data.degraded),
        }

    def counters(self) -> dict[str, int]:
        """What ``/metrics`` exposes of the hub (the same numbers as ``status``)."""
        return {"dropped_frames": self.dropped_frames, "repeats_dropped": self.repeats.repeats}

    def status(self) -> dict:
        return {
            "total_connections": len(self.clients),
            "channels": {name: len(members) for name, members in sorted(self.channels.items())},
            "backend_connections": dict(self.ingest_connections),
            "dropped_frames": self.dropped_frames,
            "repeats_dropped": self.repeats.repeats,
            "streams": {str(k): v for k, v in sorted(self.streams.items())},
        }
