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
from pathlib import Path
from typing import Any

from contracts import streams
from contracts.messages import ProgressWriter, StreamProgress, StreamState

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
    from traffic_processing.video import iter_frames, probe_video
    from traffic_processing.visualize import encode_jpeg

    from contracts.messages import FrameConfig, VideoFrame

    from .db import load_video

    log = default_log(log, __name__)
    run_id = run_id or uuid.uuid4().hex
    pkey = streams.progress_key(video_id)
    skey = streams.stop_key(video_id)

    def touch(**fields: Any) -> None:
        now = time.time()
        mapping = StreamProgress.update(_PRODUCER, updated_at=now, producer_heartbeat=now, **fields)
        pipe = redis.pipeline(transaction=False)
        pipe.hset(pkey, mapping=mapping)
        pipe.expire(pkey, streams.PROGRESS_TTL_S)
        pipe.execute()

    def stop_requested() -> bool:
        return _stop_requested(redis, skey)

    # A fresh hash for this run: a previous run's eos_processed/summary must not leak into it.
    now = time.time()
    start_fields = StreamProgress.update(
        _PRODUCER,
        state=StreamState.PRODUCING,
        frames_total=0,
        produced=0,
        produce_done=False,
        started_at=now,
        updated_at=now,
        producer_heartbeat=now,
        realtime=realtime,
        run_id=run_id,
    )
    pipe = redis.pipeline(transaction=True)
    pipe.delete(pkey)
    pipe.hset(pkey, mapping=start_fields)
    pipe.expire(pkey, streams.PROGRESS_TTL_S)
    pipe.execute()

    produced = 0
    next_frame = 0
    fps = 0.0
    config: Any = None
    state = StreamState.PRODUCING
    eos_written = False
    frames_total = 0
    t0 = clock()
    error: BaseException | None = None

    def emit(n: int, jpeg: bytes, produced_at: float, **health: Any) -> Any:
        """One frame onto ``video-frames`` with the progress (and a camera's health) in one MULTI;
        returns its stream id."""
        nonlocal produced, next_frame
        entry = VideoFrame(
            video_id=video_id,
            frame_number=n,
            frame_data=jpeg,
            timestamp=n / fps,
            produced_at=produced_at,
            config=config,
            run_id=run_id,
        )
        wall = time.time()
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(streams.VIDEO_FRAMES, entry.to_fields())  # never MAXLEN: no frame may be cut
        pipe.hset(
            pkey,
            mapping=StreamProgress.update(
                _PRODUCER, produced=produced + 1, updated_at=wall, producer_heartbeat=wall, **health
            ),
        )
        pipe.expire(pkey, streams.PROGRESS_TTL_S)
        entry_id = pipe.execute()[0]
        produced += 1
        next_frame = n + 1
        if log_every and produced % log_every == 0:
            elapsed = clock() - t0
            log.info(
                "video %d: produced %d/%s frames in %.1f s (%.1f frames/s)",
                video_id,
                produced,
                frames_total or "-",
                elapsed,
                produced / elapsed if elapsed > 0 else 0.0,
            )
        return entry_id

    def frame_config(rate: float) -> FrameConfig:
        return FrameConfig(
            roi_polygon=video.roi_polygon,
            homography_matrix=video.homography_matrix,
            fps=rate,
            # the argument, else the video's own limit (set with its calibration), else SPEED_LIMIT_KMH
            speed_limit_kmh=next(
                v for v in (speed_limit_kmh, video.speed_limit_kmh, settings.SPEED_LIMIT_KMH) if v is not None
            ),
            realtime=realtime,
        )

    try:
        video = load_video(video_id, db_url=settings.DATABASE_URL, engine=engine)
        if video.is_camera:
            from .camera_producer import CameraProducer

            if not realtime:
                raise ValueError("a camera streams live only (realtime=false is for files)")
            cam = CameraProducer(video, settings=settings, redis=redis, pkey=pkey, log=log, **(camera or {}))
            fps = cam.fps
            config = frame_config(fps)
            log_every = max(log_every, round(60 * fps))  # once a minute: it streams for days
            log.info(
                "video %d: camera %s (run %s, %.2f fps nominal, roi=%s, homography=%s, limit %g km/h)",
                video_id,
                cam.where,
                run_id,
                fps,
                config.roi_polygon is not None,
                config.homography_matrix is not None,
                config.speed_limit_kmh,
            )
            state = cam.run(emit, stop_requested, touch)
        else:
            path = resolve_video_path(video.file_path, settings.VIDEO_STORAGE_PATH)
            info = probe_video(path)
            fps = float(video.fps or info.fps)
            frames_total = int(info.frame_count or video.frame_count or 0)
            config = frame_config(fps)
            touch(frames_total=frames_total)
            log.info(
                "video %d: producing %s (run %s, %d frames at %.2f fps, %s, roi=%s, homography=%s, "
                "limit %g km/h)",
                video_id,
                path,
                run_id,
                frames_total,
                fps,
                "realtime" if realtime else "as fast as possible with backpressure",
                config.roi_polygon is not None,
                config.homography_matrix is not None,
                config.speed_limit_kmh,
            )

            t0 = clock()
            for n, frame in iter_frames(path):
                jpeg = encode_jpeg(frame, settings.PIPELINE_JPEG_QUALITY)
                if realtime:
                    delay = t0 + n / fps - clock()
                    if delay > 0:
                        sleep(delay)
                else:
                    if _wait_backlog(
                        redis,
                        pkey,
                        skey,
                        produced,
                        settings.MAX_BACKLOG_FRAMES,
                        backlog_poll_s,
                        backlog_timeout_s,
                        sleep,
                        clock,
                        touch,
                    ):
                        state = StreamState.STOPPED
                        break
                if stop_requested():
                    state = StreamState.STOPPED
                    break
                emit(n, jpeg, time.time())
            else:
                state = StreamState.PRODUCED
        if state == StreamState.STOPPED:
            log.info("video %d: stop requested, ending after %d frames", video_id, produced)
    except BaseException as exc:
        error = exc
        state = StreamState.FAILED
        raise
    finally:
        # Exactly one end-of-stream entry, whatever happened above (best effort on failure).
        try:
            if state == StreamState.PRODUCED:
                frames_total = produced  # the real count (the container's may be an estimate)
            eos = VideoFrame(
                video_id=video_id,
                frame_number=next_frame,
                frame_data=b"",
                timestamp=next_frame / fps if fps > 0 else 0.0,
                produced_at=time.time(),
                config=config,
                end_of_stream=True,
                run_id=run_id,
            )
            wall = time.time()
            done = StreamProgress.update(
                _PRODUCER,
                state=state,
                produce_done=True,
                produced=produced,
                frames_total=frames_total,
                updated_at=wall,
                producer_heartbeat=wall,
                producer_error=None if error is None else f"{type(error).__name__}: {error}"[:1000],
            )
            pipe = redis.pipeline(transaction=True)
            pipe.xadd(streams.VIDEO_FRAMES, eos.to_fields())
            pipe.hset(pkey, mapping=done)
            pipe.expire(pkey, streams.PROGRESS_TTL_S)
            pipe.execute()
            eos_written = True
        except Exception:  # noqa: BLE001 - do not hide the original error
            if error is None:
                raise
            log.exception("video %d: could not write the end-of-stream entry", video_id)

    elapsed = clock() - t0
    log.info(
        "video %d: %s, %d frames and the end of stream in %.1f s (%.1f frames/s)",
        video_id,
        state,
        produced,
        elapsed,
        produced / elapsed if elapsed > 0 else 0.0,
    )
    return {
        "video_id": video_id,
        "run_id": run_id,
        "state": state.value,
        "produced": produced,
        "frames_total": frames_total,
        "fps": fps,
        "realtime": realtime,
        "elapsed_s": round(elapsed, 3),
        "eos_written": eos_written,
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
