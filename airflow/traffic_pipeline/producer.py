"""``produce_frames``: a stored video or a camera -> JPEG entries on the ``video-frames`` stream.

A camera (``videos.source_kind``) is read by ``camera_producer.CameraProducer`` until stopped:
paced by arrival, stamped at read, reconnecting by itself, dropping its oldest frames when the
pipeline lags. A file:

- Live (``realtime=True``): frame n is added at start + n / fps (a schedule, so no drift);
  a slow processor skips frames on its side (DESIGN.md, Data flow).
- ``realtime=False``: as fast as possible, but waits while more than ``MAX_BACKLOG_FRAMES``
  of this video are unprocessed (``produced - processed`` in the progress hash,
  ``StreamProgress``).
- Never trims the stream (the Spark source trims behind its commits).
- The stop flag is read before every frame; on stop the end-of-stream entry is still written.
- Exactly one end-of-stream entry per call, also when reading or encoding fails.
- Every entry carries the run's ``run_id`` (the Airflow dag run id; a generated uuid4 hex when
  called without one): viewers tell a new run of the same video (again from frame 0) from a
  redelivery of frames already sent by it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import streams
from contracts.messages import (
    FrameConfig,
    ProgressWriter,
    StreamProgress,
    StreamState,
    VideoFrame,
    write_progress,
)

from .config import PipelineSettings, default_log

_PRODUCER = ProgressWriter.PRODUCER


class BackpressureTimeout(RuntimeError):
    """The processor consumed nothing of this video for too long (realtime=False)."""


def resolve_video_path(file_path: str, storage: Path) -> Path:
    """The stored ``file_path`` as is, else under ``storage`` (``VIDEO_STORAGE_PATH``; relative
    paths are the backend's working directory's, which the Airflow worker may not share)."""
    p = Path(file_path)
    if p.is_file():
        return p
    for candidate in (storage / p.name, storage.parent / p, storage / p):
        if candidate.is_file():
            return candidate
    return p  # probe_video raises VideoError with this path


def produce_frames(
    video_id: int,
    *,
    redis: Any,
    settings: PipelineSettings,
    engine: Any = None,
    realtime: bool = True,
    speed_limit_kmh: float | None = None,
    run_id: str | None = None,
    log: logging.Logger | None = None,
    log_every: int = 100,
    backlog_poll_s: float = 0.05,
    backlog_timeout_s: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    camera: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream the video (a camera: ``camera_producer.CameraProducer``, ``camera`` its keyword
    arguments, for tests); returns {video_id, run_id, state, produced, frames_total, fps, elapsed_s, ...}.

    ``settings``: the database (``engine`` instead, when given), VIDEO_STORAGE_PATH, the
    default speed limit, PIPELINE_JPEG_QUALITY and MAX_BACKLOG_FRAMES; ``speed_limit_kmh`` wins
    over the video's own limit and the default."""
    from .db import load_video

    run = _Run(
        video_id,
        redis=redis,
        settings=settings,
        realtime=realtime,
        speed_limit_kmh=speed_limit_kmh,
        run_id=run_id or uuid.uuid4().hex,
        log=default_log(log, __name__),
        log_every=log_every,
        pace=_Pace(sleep, clock, backlog_poll_s, backlog_timeout_s),
    )
    run.start()
    error: BaseException | None = None
    try:
        video = load_video(video_id, db_url=settings.DATABASE_URL, engine=engine)
        run.state = run.stream_camera(video, camera or {}) if video.is_camera else run.stream_file(video)
        if run.state == StreamState.STOPPED:
            run.log.info("video %d: stop requested, ending after %d frames", video_id, run.produced)
    except BaseException as exc:
        error = exc
        run.state = StreamState.FAILED
        raise
    finally:
        run.end_of_stream(error)  # exactly one, whatever happened above
    return run.report()


@dataclass(frozen=True)
class _Pace:
    """How a file's frames are paced: the sleep and clock (tests pass their own), and the
    backpressure wait's poll interval and timeout (``realtime=False``)."""

    sleep: Callable[[float], None]
    clock: Callable[[], float]
    backlog_poll_s: float
    backlog_timeout_s: float


class _Run:
    """One call's stream run: its counters, the progress hash it writes and its entries on
    ``video-frames``."""

    def __init__(
        self,
        video_id: int,
        *,
        redis: Any,
        settings: PipelineSettings,
        realtime: bool,
        speed_limit_kmh: float | None,
        run_id: str,
        log: logging.Logger,
        log_every: int,
        pace: _Pace,
    ) -> None:
        self.video_id, self.redis, self.settings, self.log = video_id, redis, settings, log
        self.realtime, self.speed_limit_kmh, self.run_id = realtime, speed_limit_kmh, run_id
        self.log_every, self.pace = log_every, pace
        self.pkey, self.skey = streams.progress_key(video_id), streams.stop_key(video_id)
        self.state = StreamState.PRODUCING
        self.produced = 0
        self.next_frame = 0
        self.frames_total = 0
        self.fps = 0.0
        self.config: FrameConfig | None = None
        self.eos_written = False
        self.t0 = 0.0

    # -- the progress hash and the stop flag -------------------------------------------------
    def start(self) -> None:
        """A fresh hash for this run: a previous run's eos_processed/summary must not leak into it."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.pkey)
        write_progress(
            pipe,
            self.video_id,
            _PRODUCER,
            state=StreamState.PRODUCING,
            frames_total=0,
            produced=0,
            produce_done=False,
            started_at=now,
            updated_at=now,
            producer_heartbeat=now,
            realtime=self.realtime,
            run_id=self.run_id,
        )
        pipe.execute()
        self.t0 = self.pace.clock()

    def touch(self, **fields: Any) -> None:
        """The producer's heartbeat, with ``fields``."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        write_progress(pipe, self.video_id, _PRODUCER, updated_at=now, producer_heartbeat=now, **fields)
        pipe.execute()

    def stop_requested(self) -> bool:
        return _stop_requested(self.redis, self.skey)

    # -- the sources -------------------------------------------------------------------------
    def frame_config(self, video: Any, fps: float) -> FrameConfig:
        return FrameConfig(
            roi_polygon=video.roi_polygon,
            homography_matrix=video.homography_matrix,
            fps=fps,
            # the argument, else the video's own limit (set with its calibration), else SPEED_LIMIT_KMH
            speed_limit_kmh=next(
                v
                for v in (self.speed_limit_kmh, video.speed_limit_kmh, self.settings.SPEED_LIMIT_KMH)
                if v is not None
            ),
            realtime=self.realtime,
        )

    def stream_camera(self, video: Any, camera: dict[str, Any]) -> StreamState:
        """A camera until the stop flag (``CameraProducer``, ``camera``: its keyword arguments)."""
        from .camera_producer import CameraProducer

        if not self.realtime:
            raise ValueError("a camera streams live only (realtime=false is for files)")
        cam = CameraProducer(
            video, settings=self.settings, redis=self.redis, pkey=self.pkey, log=self.log, **camera
        )
        self.fps = cam.fps
        self.config = config = self.frame_config(video, self.fps)
        self.log_every = max(self.log_every, round(60 * self.fps))  # once a minute: it streams for days
        self.log.info(
            "video %d: camera %s (run %s, %.2f fps nominal, roi=%s, homography=%s, limit %g km/h)",
            self.video_id,
            cam.where,
            self.run_id,
            self.fps,
            config.roi_polygon is not None,
            config.homography_matrix is not None,
            config.speed_limit_kmh,
        )
        return cam.run(self.emit, self.stop_requested, self.touch)

    def open_file(self, video: Any) -> Path:
        """The stored video's path; its rate, frame count and frame config taken from its headers
        (and its row)."""
        from traffic_processing.video import probe_video

        path = resolve_video_path(video.file_path, self.settings.VIDEO_STORAGE_PATH)
        info = probe_video(path)
        self.fps = float(video.fps or info.fps)
        self.frames_total = int(info.frame_count or video.frame_count or 0)
        self.config = config = self.frame_config(video, self.fps)
        self.touch(frames_total=self.frames_total)
        self.log.info(
            "video %d: producing %s (run %s, %d frames at %.2f fps, %s, roi=%s, homography=%s, "
            "limit %g km/h)",
            self.video_id,
            path,
            self.run_id,
            self.frames_total,
            self.fps,
            "realtime" if self.realtime else "as fast as possible with backpressure",
            config.roi_polygon is not None,
            config.homography_matrix is not None,
            config.speed_limit_kmh,
        )
        return path

    def stream_file(self, video: Any) -> StreamState:
        """Every frame of the stored video (PRODUCED), or up to the stop flag (STOPPED)."""
        from traffic_processing.video import iter_frames
        from traffic_processing.visualize import encode_jpeg

        path = self.open_file(video)
        self.t0 = self.pace.clock()
        for n, frame in iter_frames(path):
            jpeg = encode_jpeg(frame, self.settings.PIPELINE_JPEG_QUALITY)
            if self.wait_turn(n) or self.stop_requested():
                return StreamState.STOPPED
            self.emit(n, jpeg, time.time())
        return StreamState.PRODUCED

    def wait_turn(self, n: int) -> bool:
        """Frame ``n``'s turn: live, its time on the schedule (start + n / fps: no drift); else
        no more than MAX_BACKLOG_FRAMES unprocessed (``_wait_backlog``). True: stop requested."""
        pace = self.pace
        if self.realtime:
            delay = self.t0 + n / self.fps - pace.clock()
            if delay > 0:
                pace.sleep(delay)
            return False
        return _wait_backlog(
            self.redis,
            self.pkey,
            self.skey,
            self.produced,
            self.settings.MAX_BACKLOG_FRAMES,
            pace.backlog_poll_s,
            pace.backlog_timeout_s,
            pace.sleep,
            pace.clock,
            self.touch,
        )

    # -- the entries -------------------------------------------------------------------------
    def emit(self, n: int, jpeg: bytes, produced_at: float, **health: Any) -> Any:
        """One frame onto ``video-frames`` with the progress (and a camera's health) in one MULTI;
        returns its stream id."""
        entry = VideoFrame(
            video_id=self.video_id,
            frame_number=n,
            frame_data=jpeg,
            timestamp=n / self.fps,
            produced_at=produced_at,
            config=self.config,
            run_id=self.run_id,
        )
        wall = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(streams.VIDEO_FRAMES, entry.to_fields())  # never MAXLEN: no frame may be cut
        write_progress(
            pipe,
            self.video_id,
            _PRODUCER,
            produced=self.produced + 1,
            updated_at=wall,
            producer_heartbeat=wall,
            **health,
        )
        entry_id = pipe.execute()[0]
        self.produced += 1
        self.next_frame = n + 1
        if self.log_every and self.produced % self.log_every == 0:
            self.log_rate(f"produced {self.produced}/{self.frames_total or '-'} frames")
        return entry_id

    def end_of_stream(self, error: BaseException | None) -> None:
        """The end-of-stream entry and the final progress in one MULTI; on failure (``error``)
        best effort: a failure to write it is logged, not raised over the original error."""
        try:
            if self.state == StreamState.PRODUCED:
                self.frames_total = self.produced  # the real count (the container's may be an estimate)
            eos = VideoFrame(
                video_id=self.video_id,
                frame_number=self.next_frame,
                frame_data=b"",
                timestamp=self.next_frame / self.fps if self.fps > 0 else 0.0,
                produced_at=time.time(),
                config=self.config,
                end_of_stream=True,
                run_id=self.run_id,
            )
            wall = time.time()
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(streams.VIDEO_FRAMES, eos.to_fields())
            write_progress(
                pipe,
                self.video_id,
                _PRODUCER,
                state=self.state,
                produce_done=True,
                produced=self.produced,
                frames_total=self.frames_total,
                updated_at=wall,
                producer_heartbeat=wall,
                producer_error=None if error is None else f"{type(error).__name__}: {error}"[:1000],
            )
            pipe.execute()
            self.eos_written = True
        except Exception:  # noqa: BLE001 - do not hide the original error
            if error is None:
                raise
            self.log.exception("video %d: could not write the end-of-stream entry", self.video_id)

    # -- the outcome -------------------------------------------------------------------------
    def log_rate(self, what: str) -> float:
        """Log ``what`` with the time since the start and the frame rate; returns the time."""
        elapsed = self.pace.clock() - self.t0
        self.log.info(
            "video %d: %s in %.1f s (%.1f frames/s)",
            self.video_id,
            what,
            elapsed,
            self.produced / elapsed if elapsed > 0 else 0.0,
        )
        return elapsed

    def report(self) -> dict[str, Any]:
        elapsed = self.log_rate(f"{self.state}, {self.produced} frames and the end of stream")
        return {
            "video_id": self.video_id,
            "run_id": self.run_id,
            "state": self.state.value,
            "produced": self.produced,
            "frames_total": self.frames_total,
            "fps": self.fps,
            "realtime": self.realtime,
            "elapsed_s": round(elapsed, 3),
            "eos_written": self.eos_written,
        }


def _wait_backlog(
    redis: Any,
    pkey: str,
    skey: str,
    produced: int,
    max_backlog: int,
    poll_s: float,
    timeout_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    touch: Callable[..., None],
) -> bool:
    """Block while more than ``max_backlog`` frames are unprocessed. True: stop requested.

    Raises BackpressureTimeout when ``processed`` does not move for ``timeout_s``, and
    RuntimeError on the processor's ``fatal_error``."""
    last_processed: int | None = None
    last_change = clock()
    last_touch = clock()
    while True:
        progress = StreamProgress.from_hash(redis.hgetall(pkey))
        processed = progress.processed or 0
        if produced - processed <= max_backlog:
            return False
        if progress.fatal_error:
            raise RuntimeError(f"processor failed: {progress.fatal_error}")
        if _stop_requested(redis, skey):
            return True
        now = clock()
        if processed != last_processed:
            last_processed, last_change = processed, now
        elif now - last_change > timeout_s:
            raise BackpressureTimeout(
                f"{produced - processed} frames unprocessed and no progress for {timeout_s:.0f} s"
            )
        if now - last_touch >= 1.0:  # keep the producer's heartbeat fresh while waiting
            touch()
            last_touch = now
        sleep(poll_s)


def _stop_requested(redis: Any, skey: str) -> bool:
    """The backend set the stop flag (``streams.stop_key``)."""
    value = redis.get(skey)
    return value is not None and streams.text(value) == "1"
