"""A camera's producer: read until stopped, paced by arrival, bounded whatever happens.

- A reader thread keeps the camera open (``traffic_processing.camera``: PyAV, RTSP over TCP) and
  puts each decoded frame, stamped with the wall clock at read, into a small buffer that drops its
  oldest frame when full (``camera_dropped``).
- The producer loop sends the newest buffered frames as they arrive, never at a file's rate; it
  holds back while more than ``CAMERA_MAX_BACKLOG_S`` of this camera's frames wait for the
  processor (a Spark restart, a slow machine): the reader's buffer then drops the oldest, so the
  camera's share of ``video-frames`` stays bounded and the processor resumes on fresh frames.
- Watchdog: no frame for ``CAMERA_STALL_S`` (PyAV's read timeout: a frozen server), an error, or
  the server closing the stream -> reconnect with exponential backoff (``CAMERA_BACKOFF_S`` up to
  ``CAMERA_BACKOFF_MAX_S``; a permanent refusal, such as wrong credentials, waits the longest and
  shows as "failed"). No execution timeout: it runs until the stop flag, answered within
  ``poll_s``.
- Frame numbers follow the camera's own clock (presentation times): video time stays true through
  jitter, and an outage leaves a gap of as many frames as it lasted (the tracker steps by elapsed
  frames), never a jump the speed estimator would read as motion.
- Health in the progress hash (``StreamProgress.camera_state`` ...): connecting, live,
  reconnecting, failed; the last frame's wall clock, the input rate measured over the last
  seconds, reconnects, the last error (credentials redacted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from traffic_processing import camera

from contracts import streams
from contracts.messages import CameraState, StreamState

from .config import PipelineSettings

DEFAULT_FPS = 25.0


class CameraProducer:
    """One camera's stream run. ``connect``: ``traffic_processing.camera.connect`` (tests pass
    their own)."""

    def __init__(
        self,
        video: Any,
        *,
        settings: PipelineSettings,
        redis: Any,
        pkey: str,
        log: logging.Logger,
        connect: Callable[[str, float], camera.CameraConnection] = camera.connect,
        poll_s: float = 0.1,
        first_connection: camera.CameraConnection | None = None,
    ) -> None:
        if not video.source_url:
            raise ValueError(f"camera {video.id} has no URL")
        self.video, self.settings, self.redis, self.pkey, self.log = video, settings, redis, pkey, log
        self.url: str = video.source_url
        self.where = camera.redact(self.url)
        self.secrets = camera.url_secrets(self.url)
        self.connect, self.poll_s = connect, poll_s
        self.timeout_s = settings.CAMERA_STALL_S
        self.buffer: deque[_Tagged] = deque(maxlen=settings.CAMERA_BUFFER_FRAMES)
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.state = CameraState.CONNECTING
        self.error: str | None = None
        self.reconnects = 0
        self.dropped = 0
        self.reads: deque[float] = deque(maxlen=256)  # wall clock of recent reads (input rate)
        self.last_frame_at: float | None = None
        self.connected_at = 0.0  # wall clock of the current connection's first frame
        self.connection_no = 0  # bumped on every (re)connection: frame numbering restarts from it
        self._pending = first_connection
        # The run's frame rate: the camera's own, else the one grabbed when it was added.
        self.fps = DEFAULT_FPS
        if first_connection is None:
            self._pending = self._open_first()
        if self._pending is not None and self._pending.fps:
            self.fps = self._pending.fps
        elif video.fps:
            self.fps = float(video.fps)

    # -- the reader thread -----------------------------------------------------------------
    def _open_first(self) -> camera.CameraConnection | None:
        try:
            return self.connect(self.url, self.timeout_s)
        except camera.CameraReadError as exc:
            self._failed(exc)
            return None

    def _failed(self, exc: camera.CameraReadError) -> None:
        self.error = f"{exc.code}: {camera.redact_text(str(exc), *self.secrets)}"[:500]
        self.state = CameraState.FAILED if exc.permanent else CameraState.RECONNECTING

    def _read(self) -> None:
        backoff = self.settings.CAMERA_BACKOFF_S
        conn, self._pending = self._pending, None
        while not self.stopping.is_set():
            if conn is None:
                wait = self.settings.CAMERA_BACKOFF_MAX_S if self.state == CameraState.FAILED else backoff
                if self.stopping.wait(wait):
                    return
                backoff = min(backoff * 2, self.settings.CAMERA_BACKOFF_MAX_S)
                try:
                    conn = self.connect(self.url, self.timeout_s)
                except camera.CameraReadError as exc:
                    self._failed(exc)
                    self.log.warning("camera %s: %s (retrying in %.1f s)", self.where, self.error, backoff)
                    continue
                self.reconnects += 1
            self.connection_no += 1
            self.connected_at = 0.0
            try:
                for frame in conn.frames:
                    with self.cond:
                        if len(self.buffer) == self.buffer.maxlen:
                            self.dropped += 1  # the oldest goes
                        self.buffer.append(_Tagged(frame, self.connection_no))
                        self.connected_at = self.connected_at or frame.read_at
                        self.reads.append(frame.read_at)
                        self.last_frame_at = frame.read_at
                        if self.state != CameraState.LIVE:
                            self.log.info("camera %s: live (%s)", self.where, conn.codec)
                        self.state, backoff = CameraState.LIVE, self.settings.CAMERA_BACKOFF_S
                        self.cond.notify()
                    if self.stopping.is_set():
                        break
                else:
                    self.error = f"camera_unreachable: {self.where}: the server ended the stream"
                    self.state = CameraState.RECONNECTING
            except camera.CameraReadError as exc:
                self._failed(exc)
                self.log.warning("camera %s: %s: reconnecting", self.where, self.error)
            finally:
                conn.close()
                conn = None

    # -- the producer loop -----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        now = time.time()
        # over the last 5 s, leaving out a connection's first second (FFmpeg's probing hands
        # over a burst of what the server had buffered)
        recent = [t for t in self.reads if now - t <= 5.0 and t - self.connected_at >= 1.0]
        rate = (
            (len(recent) - 1) / (recent[-1] - recent[0])
            if len(recent) > 2 and recent[-1] > recent[0]
            else 0.0
        )
        return {
            "camera_state": self.state,
            "last_frame_at": self.last_frame_at,
            "input_fps": round(rate, 2),
            "reconnects": self.reconnects,
            "camera_error": self.error or "",
            "camera_dropped": self.dropped,
        }

    def backlog(self) -> int:
        """This camera's entries in ``video-frames`` the processor has not read yet: those after
        the furthest it got, the last one its stage read ahead (``streams.PULLED_KEY``) or the
        last frame its sink counted (``processed_last_frame``; its ``processed`` counter moves
        only once per micro-batch, which lasts seconds while the stage reads ahead)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(streams.PULLED_KEY, str(self.video.id))
        pipe.hget(self.pkey, "processed_last_frame")
        pulled, last_frame = pipe.execute()
        read = streams.parse_stream_id(pulled) if pulled else (0, 0)
        if last_frame is not None:
            done = [i for i, n in self.sent if n <= int(last_frame)]
            read = max([read, *done])
        while self.sent and self.sent[0][0] <= read:
            self.sent.popleft()
        return len(self.sent)

    def run(
        self,
        emit: Callable[..., Any],
        stop_requested: Callable[[], bool],
        touch: Callable[..., None],
    ) -> StreamState:
        """Send frames until the stop flag; returns ``StreamState.STOPPED``."""
        reader = threading.Thread(target=self._read, name=f"camera-{self.video.id}", daemon=True)
        reader.start()
        max_backlog = max(1, round(self.settings.CAMERA_MAX_BACKLOG_S * self.fps))
        # (stream id, frame number) of the entries sent and not yet known read by the processor
        self.sent: deque[tuple[tuple[int, int], int]] = deque(maxlen=4 * max_backlog + 16)
        numbering = _Numbering(self.fps)
        last_health = 0.0
        try:
            while not stop_requested():
                with self.cond:
                    if not self.buffer:
                        self.cond.wait(self.poll_s)
                    frame = self.buffer.popleft() if self.buffer and self.backlog() <= max_backlog else None
                now = time.monotonic()
                if frame is None:
                    if now - last_health >= 1.0:  # the heartbeat and the health while no frame goes out
                        touch(**self.health())
                        last_health = now
                    if self.buffer:  # held back: the processor lags
                        time.sleep(self.poll_s)
                    continue
                n = numbering(frame.frame, frame.connection)
                jpeg = _encode(frame.frame.image, self.settings.PIPELINE_JPEG_QUALITY)
                entry_id = emit(n, jpeg, frame.frame.read_at, **self.health())
                self.sent.append((streams.parse_stream_id(entry_id), n))
                last_health = now
        finally:
            self.stopping.set()
            reader.join(timeout=self.poll_s)  # a read blocked in FFmpeg ends with its timeout
            touch(**self.health())
        return StreamState.STOPPED


class _Tagged:
    __slots__ = ("connection", "frame")

    def __init__(self, frame: camera.CameraFrame, connection: int) -> None:
        self.frame, self.connection = frame, connection


class _Numbering:
    """Frame numbers on the camera's clock: within a connection, the first frame's number plus
    its presentation time times the rate; a new connection goes on after the wall-clock gap."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.connection = 0
        self.base = 0
        self.last = -1
        self.last_read = 0.0

    def __call__(self, frame: camera.CameraFrame, connection: int) -> int:
        if connection != self.connection:
            gap = 0 if self.last < 0 else max(1, round((frame.read_at - self.last_read) * self.fps))
            self.connection, self.base = connection, self.last + gap if self.last >= 0 else 0
            n = self.base
        elif frame.pts_s is None:
            n = self.last + 1
        else:
            n = self.base + round(frame.pts_s * self.fps)
        n = max(n, self.last + 1)
        self.last, self.last_read = n, frame.read_at
        return n


def _encode(image: Any, quality: int) -> bytes:
    from traffic_processing.visualize import encode_jpeg

    return encode_jpeg(image, quality)
