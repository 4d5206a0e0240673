"""REST handlers for videos: upload, list, detail, delete, calibration, thumbnail, start/stop,
results (analytics, violations, passages, report)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
from pydantic import ValidationError
from tornado.web import stream_request_body
from traffic_processing import streams
from traffic_processing.calibration import CalibrationError, fit_homography
from traffic_processing.roi import RoiError, parse_polygon
from traffic_processing.schemas import Violation
from traffic_processing.video import VideoError, VideoInfo, first_frame, probe_video
from traffic_processing.visualize import encode_jpeg

from backend.db import crud
from backend.db.models import SPEED_LIMIT_KEY, SpeedingViolation, VehiclePassage, Video, utc_iso
from backend.handlers.base import PG_INT_MAX, ApiError, BaseHandler, parse_video_id
from backend.schemas import CalibrationIn, StreamStartIn
from backend.services import metrics
from backend.services.airflow_client import AirflowError, AirflowUnavailable
from backend.services.containers import TruncatedVideo, check_complete
from backend.services.report import traffic_report
from backend.services.uploads import MultipartUpload, UploadRejected

log = logging.getLogger("backend.videos")

# How far past the limit a streamed body is read and discarded (so that the client gets a
# clean 413 once it has sent everything) before the connection is simply cut.
DRAIN_ALLOWANCE = 64 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part


def probe_complete(path: Path) -> VideoInfo:
    """OpenCV probe (readable, fps, frames, size) plus a read near the end to catch truncation."""
    try:
        check_complete(path)
    except TruncatedVideo as exc:
        raise VideoError(f"the file is truncated: {exc}") from exc
    info = probe_video(path)
    if info.frame_count < 1:
        raise VideoError(f"{path.name} reports no frames")
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(info.frame_count - 1, 0))
        ok, _ = cap.read()
    finally:
        cap.release()
    if not ok:
        raise VideoError("the file is truncated or corrupt: its last frames cannot be read")
    return info


class VideoBase(BaseHandler):
    async def load_video(self, raw_id: str) -> Video:
        video_id = parse_video_id(raw_id)
        video = await self.application.db.run(lambda s: crud.get_video(session=s, video_id=video_id))
        if video is None:
            raise ApiError(404, "video_not_found", f"no video with id {video_id}")
        return video

    def video_json(self, video: Video) -> dict[str, Any]:
        return video.to_dict(self.application.config.SPEED_LIMIT_KMH)

    def speed_limit(self, video: Video) -> float:
        limit = video.speed_limit_kmh
        return limit if limit is not None else self.application.config.SPEED_LIMIT_KMH

    def result_format(self) -> str:
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(400, "invalid_format", f"format must be 'json' or 'csv', not {fmt[:40]!r}")
        return fmt

    def send_csv(self, filename: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        self.set_header("Content-Type", "text/csv; charset=UTF-8")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(out.getvalue())


@stream_request_body
class UploadHandler(VideoBase):
    """``POST /api/videos/upload`` (multipart: ``video``, ``name``, optional ``roi``, ``fps``)."""

    upload: MultipartUpload | None = None
    rejected: UploadRejected | None = None
    committed = False

    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        config = self.application.config
        limit = config.max_upload_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit + MULTIPART_SLACK:
            metrics.UPLOADS.labels("too_large").inc()
            raise ApiError(
                413, "payload_too_large", f"upload is over the limit of {config.MAX_UPLOAD_MB:g} MB"
            )
        self.request.connection.set_max_body_size(limit + MULTIPART_SLACK + DRAIN_ALLOWANCE)
        try:
            self.upload = MultipartUpload(
                self.request.headers, config.VIDEO_STORAGE_PATH, limit + MULTIPART_SLACK
            )
        except UploadRejected as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc

    def data_received(self, chunk: bytes) -> None:
        if self.rejected is not None or self.upload is None or self._finished:
            return  # draining a rejected body: read and dropped
        try:
            self.upload.feed(chunk)
        except UploadRejected as exc:
            self.rejected = exc
            self.upload.discard()

    async def post(self) -> None:
        upload = self.upload
        assert upload is not None
        try:
            if self.rejected is not None:
                raise self.rejected
            video = await self._store(upload)
        except UploadRejected as exc:
            upload.discard()
            metrics.UPLOADS.labels(exc.code).inc()
            raise ApiError(exc.status, exc.code, exc.message) from exc
        except BaseException:
            upload.discard()
            raise
        metrics.UPLOADS.labels("ok").inc()
        log.info("uploaded video %d (%s) to %s", video.id, video.name, video.file_path)
        self.send_json(self.video_json(video), 201)

    async def _store(self, upload: MultipartUpload) -> Video:
        upload.video.close()
        if not upload.video.started:
            raise UploadRejected(400, "missing_field", "multipart field 'video' (the file) is required")
        if not upload.video.finished:
            raise UploadRejected(400, "invalid_multipart", "the multipart body ended inside the 'video' part")
        name = (upload.fields["name"].value or "").strip()
        if not name:
            raise UploadRejected(400, "missing_field", "multipart field 'name' is required")
        if upload.video.size == 0:
            raise UploadRejected(400, "empty_file", "the uploaded file is empty")
        roi = self._roi(upload.fields["roi"].value)
        fps = self._fps(upload.fields["fps"].value)
        try:
            info = await self.application.db.run_blocking(probe_complete, upload.temp_path)
        except VideoError as exc:
            raise UploadRejected(400, "invalid_video", f"not a readable video: {exc}") from exc
        if roi is not None and (outside := outside_frame("roi", roi, info.width, info.height)):
            raise UploadRejected(400, "invalid_roi", outside)
        storage = self.application.config.VIDEO_STORAGE_PATH
        ext = upload.video.extension
        fps = fps or info.fps

        moved: list[Path] = []

        def insert(session) -> Video:
            video = crud.create_video(
                session=session,
                name=name,
                file_path=str(upload.temp_path),
                fps=fps,
                frame_count=info.frame_count,
                width=info.width,
                height=info.height,
                duration=info.frame_count / fps,
                roi=roi,
            )
            final = storage / f"{video.id}{ext}"  # server-chosen name
            os.replace(upload.temp_path, final)
            moved.append(final)
            return crud.set_file_path(session=session, video_id=video.id, file_path=str(final))

        try:
            return await self.application.db.run(insert)
        except BaseException:
            # The transaction rolled back, so no row names the moved file: remove it too.
            for path in moved:
                path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _roi(raw: str | None) -> list[list[float]] | None:
        if raw is None or not raw.strip():
            return None
        try:
            polygon = parse_polygon(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise UploadRejected(400, "invalid_roi", f"roi is not valid JSON: {exc}") from exc
        except RoiError as exc:
            raise UploadRejected(400, "invalid_roi", str(exc)) from exc
        return None if polygon is None else polygon.tolist()

    @staticmethod
    def _fps(raw: str | None) -> float | None:
        if raw is None or not raw.strip():
            return None
        try:
            fps = float(raw)
        except ValueError as exc:
            raise UploadRejected(400, "invalid_fps", f"fps {raw!r} is not a number") from exc
        if not 0 < fps <= 1000:
            raise UploadRejected(400, "invalid_fps", f"fps {fps} must be in (0, 1000]")
        return fps

    def on_connection_close(self) -> None:
        if self.upload is not None:
            self.upload.discard()
        super().on_connection_close()

    def on_finish(self) -> None:
        if self.upload is not None and self.get_status() != 201:
            self.upload.discard()
        super().on_finish()


class VideoListHandler(VideoBase):
    async def get(self) -> None:
        videos = await self.application.db.run(lambda s: crud.list_videos(session=s))
        self.send_json({"videos": [self.video_json(v) for v in videos]})


STREAMING_STATUSES = ("processing", "stopping")


class VideoHandler(VideoBase):
    async def get(self, raw_id: str) -> None:
        self.send_json(self.video_json(await self.load_video(raw_id)))

    async def delete(self, raw_id: str) -> None:
        """``DELETE /api/videos/{id}``: 204; the row (analytics, violations and passages cascade),
        the video file, its violations' snapshots and the video's Redis keys go. 409 while it
        streams: its status is processing/stopping and Airflow has an active run of it (or cannot
        be asked)."""
        video = await self.load_video(raw_id)
        if video.status in STREAMING_STATUSES:
            try:
                runs = await self.application.airflow.active_runs(video.id)
            except (AirflowUnavailable, AirflowError) as exc:
                raise ApiError(
                    409,
                    "video_streaming",
                    f"video {video.id} is {video.status} and Airflow cannot confirm that it ended ({exc}); "
                    "stop it or try again later",
                ) from exc
            if runs:
                raise ApiError(
                    409, "video_streaming", f"video {video.id} is being streamed: stop it before deleting it"
                )
        deleted = await self.application.db.run(lambda s: crud.delete_video(session=s, video_id=video.id))
        if deleted is None:
            raise ApiError(404, "video_not_found", f"no video with id {video.id}")
        storage = self.application.config.VIDEO_STORAGE_PATH
        await self.application.db.run_blocking(_remove_stored_file, video.file_path, storage)
        await self.application.db.run_blocking(_remove_snapshots, video.id, deleted[1], storage)
        try:
            await self.application.redis.delete(
                streams.stop_key(video.id),
                streams.progress_key(video.id),
                streams.violations_key(video.id),
                streams.analytics_key(video.id),
            )
        except Exception as exc:  # keys expire on their own; the video is gone already
            log.warning("video %d deleted, its Redis keys not cleared: %r", video.id, exc)
        log.info("deleted video %d (%s, %s)", video.id, video.name, video.file_path)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


def snapshot_dir(storage: Path, video_id: int) -> Path:
    """Where the pipeline's clean-up writes a video's violation snapshots
    (``<VIDEO_STORAGE_PATH>/snapshots/<video_id>/<track_id>.jpg``)."""
    return storage / "snapshots" / str(video_id)


def _remove_snapshots(video_id: int, paths: list[str], storage: Path) -> None:
    """Remove the snapshot files the video's violations named (those inside the storage
    directory) and the video's snapshot directory."""
    for path in paths:
        _remove_stored_file(path, storage)
    directory = snapshot_dir(storage, video_id)
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        log.warning("could not remove %s", directory)


def _remove_stored_file(file_path: str, storage: Path) -> bool:
    """Remove a video file that lives in the storage directory (never a file elsewhere)."""
    path = Path(file_path).resolve()
    if not path.is_relative_to(storage.resolve()):
        log.warning("not removing %s: outside %s", path, storage)
        return False
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # the row is gone already: report, do not fail the request
        log.warning("could not remove %s: %s", path, exc)
        return False
    return True


class CalibrationHandler(VideoBase):
    """``PUT /api/videos/{id}/calibration``: ROI + point pairs -> homography (metres).

    The body has exactly the fields of ``CalibrationIn`` (``roi_polygon``, ``image_points``,
    ``world_points``, optional ``speed_limit_kmh``), as the OpenAPI document says; ROI and image
    points must lie inside the video's frame (0 <= x <= width, 0 <= y <= height)."""

    async def put(self, raw_id: str) -> None:
        video_id = parse_video_id(raw_id)
        payload = self.json_body()
        _refuse_unknown_fields(payload)
        try:
            body = CalibrationIn.model_validate(payload)
        except ValidationError as exc:
            field = exc.errors()[0]["loc"][:1]
            code = "invalid_speed_limit" if field == ("speed_limit_kmh",) else "invalid_calibration"
            raise ApiError(400, code, _validation_message(exc)) from exc
        video = await self.load_video(raw_id)
        _check_inside_frame("roi_polygon", body.roi_polygon, video, "invalid_roi")
        _check_inside_frame("image_points", body.image_points, video, "invalid_calibration")
        try:
            roi = parse_polygon(body.roi_polygon)
        except RoiError as exc:
            raise ApiError(400, "invalid_roi", str(exc)) from exc
        try:
            homography = fit_homography(body.image_points, body.world_points)
        except CalibrationError as exc:
            raise ApiError(422, "degenerate_calibration", str(exc)) from exc
        points: dict[str, Any] = {"image_points": body.image_points, "world_points": body.world_points}
        if body.speed_limit_kmh is not None:
            points[SPEED_LIMIT_KEY] = body.speed_limit_kmh
        video = await self.application.db.run(
            lambda s: crud.update_calibration(
                session=s,
                video_id=video_id,
                roi=roi.tolist(),
                calibrate_coordinates=points,
                homography_matrix=homography.matrix.tolist(),
            )
        )
        if video is None:
            raise ApiError(404, "video_not_found", f"no video with id {video_id}")
        self.send_json(
            {"video": self.video_json(video), "reprojection_error_m": homography.reprojection_error_m}
        )


CALIBRATION_FIELDS: tuple[str, ...] = tuple(CalibrationIn.model_fields)
RENAMED_CALIBRATION_FIELDS = {"roi": "roi_polygon"}


def _refuse_unknown_fields(payload: Any) -> None:
    """400 naming every field of the body that ``CalibrationIn`` does not have."""
    if not isinstance(payload, dict):
        return  # the model says what is wrong with it
    unknown = [str(k) for k in payload if k not in CALIBRATION_FIELDS]
    if not unknown:
        return
    names = ", ".join(repr(k[:40]) for k in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    hints = [f"{old!r} is now {new!r}" for old, new in RENAMED_CALIBRATION_FIELDS.items() if old in unknown]
    message = f"unknown field{'s' if len(unknown) > 1 else ''} {names}"
    if hints:
        message += f" ({'; '.join(hints)})"
    message += f"; the fields are {', '.join(CALIBRATION_FIELDS)}"
    raise ApiError(400, "invalid_calibration", message)


def outside_frame(name: str, points: list[list[float]], width: int | None, height: int | None) -> str | None:
    """The message naming the first point outside a ``width`` x ``height`` frame, None when all
    are inside (0 <= x <= width, 0 <= y <= height: the border is inside) or the size is unknown."""
    if not width or not height:  # not probed (an old row): nothing to check against
        return None
    for i, (x, y) in enumerate(points):
        if not (0 <= x <= width and 0 <= y <= height):
            return f"{name}[{i}] = ({x:g}, {y:g}) is outside the {width}x{height} frame"
    return None


def _check_inside_frame(name: str, points: list[list[float]], video: Video, code: str) -> None:
    """400 naming the first point outside the video's frame."""
    message = outside_frame(name, points, video.width, video.height)
    if message is not None:
        raise ApiError(400, code, message)


class ThumbnailHandler(VideoBase):
    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)

        def render() -> bytes:
            return encode_jpeg(first_frame(video.file_path), 85)

        try:
            jpeg = await self.application.db.run_blocking(render)
        except VideoError as exc:
            raise ApiError(404, "thumbnail_unavailable", f"cannot read the video file: {exc}") from exc
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(jpeg)


class StreamStartHandler(VideoBase):
    """``POST /api/videos/{id}/stream/start`` (optional body ``{"realtime": bool}``, default true):
    trigger the DAG with conf ``{"video_id", "realtime"}``; 409 if already running, 503 if down.

    Before the trigger, the video's stop flag, progress hash, violations list and live analytics
    snapshot are deleted, so that a rerun starts clean (nothing of this video runs: checked); once
    triggered, the stored results of a previous run (analytics, violations and their snapshot
    files, passages) are too.
    """

    async def post(self, raw_id: str) -> None:
        body = self._body()
        video = await self.load_video(raw_id)
        airflow = self.application.airflow
        try:
            if await airflow.active_runs(video.id):
                raise ApiError(409, "already_streaming", f"video {video.id} is already being streamed")
            await self.application.redis.delete(
                streams.stop_key(video.id),
                streams.progress_key(video.id),
                streams.violations_key(video.id),
                streams.analytics_key(video.id),
            )
            run = await airflow.trigger(video.id, {"realtime": body.realtime})
        except AirflowUnavailable as exc:
            raise ApiError(503, "airflow_unavailable", str(exc)) from exc
        except AirflowError as exc:
            raise ApiError(502, "airflow_error", str(exc)) from exc

        def started(session) -> list[str]:
            snapshots = crud.clear_results(session=session, video_id=video.id)
            crud.set_status(session=session, video_id=video.id, status="processing")
            return snapshots

        snapshots = await self.application.db.run(started)
        storage = self.application.config.VIDEO_STORAGE_PATH
        await self.application.db.run_blocking(_remove_snapshots, video.id, snapshots, storage)
        self.send_json({"video_id": video.id, "status": "processing", "dag_run": run}, 201)

    def _body(self) -> StreamStartIn:
        if not self.request.body or not self.request.body.strip():
            return StreamStartIn()
        try:
            return StreamStartIn.model_validate(self.json_body())
        except ValidationError as exc:
            raise ApiError(400, "invalid_body", _validation_message(exc)) from exc


class StreamStopHandler(VideoBase):
    """``POST /api/videos/{id}/stream/stop``: raise the stop flag; 409 when nothing runs."""

    async def post(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        try:
            runs = await self.application.airflow.active_runs(video.id)
        except AirflowUnavailable as exc:
            raise ApiError(503, "airflow_unavailable", str(exc)) from exc
        except AirflowError as exc:
            raise ApiError(502, "airflow_error", str(exc)) from exc
        if not runs:
            raise ApiError(409, "not_streaming", f"video {video.id} is not being streamed")
        await self.application.redis.set(streams.stop_key(video.id), "1", ex=3600)
        await self.application.db.run(
            lambda s: crud.set_status(session=s, video_id=video.id, status="stopping")
        )
        self.send_json(
            {"video_id": video.id, "status": "stopping", "dag_run_ids": [r.get("dag_run_id") for r in runs]},
            202,
        )


class AnalyticsHandler(VideoBase):
    """Final ``video_analytics`` row, else the live snapshot ``analytics:video:{id}`` in Redis
    (``streams.analytics_key``)."""

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        row = await self.application.db.run(lambda s: crud.get_analytics(session=s, video_id=video.id))
        if row is not None:
            self.send_json({"source": "final", **row.to_dict()})
            return
        live = await self.application.redis.get(streams.analytics_key(video.id))
        if live:
            try:
                snapshot = json.loads(live)
                snapshot.pop("vehicles", None)  # the passages: GET .../passages once stored
                self.send_json({"source": "live", "video_id": video.id, **snapshot})
                return
            except (json.JSONDecodeError, TypeError, AttributeError):
                log.warning("%s holds no JSON object", streams.analytics_key(video.id))
        raise ApiError(404, "analytics_not_found", f"no analytics yet for video {video.id}")


class ViolationsHandler(VideoBase):
    """``GET /api/videos/{id}/violations`` (``?format=csv``): the stored ``speeding_violations``
    rows; while none are stored (a stream runs: the cleanup stores them at its end), the live list
    the processor appends to in Redis (``streams.violations_key``), one entry per track, without
    ``id`` or snapshot (its JPEG crop is never shipped here: ``snapshot_url`` serves a stored one).
    So a page opened or reloaded mid-stream shows the speeding log so far. ``source`` says which
    (``stored`` / ``live``). ``detected_at``: the wall clock the processor flagged the vehicle at
    (ISO 8601, UTC)."""

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        fmt = self.result_format()
        rows = await self.application.db.run(lambda s: crud.list_violations(session=s, video_id=video.id))
        items = [r.to_dict() for r in rows]
        source = "stored"
        if not items:
            items = await self._live(video.id)
            source = "live" if items else "stored"
        if fmt == "json":
            self.send_json({"video_id": video.id, "source": source, "violations": items})
            return
        self.send_csv(f"video_{video.id}_violations.csv", _CSV_COLUMNS, items)

    async def _live(self, video_id: int) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for raw in await self.application.redis.lrange(streams.violations_key(video_id), 0, -1):
            try:
                v = Violation.model_validate_json(raw)
            except ValueError:
                log.warning("%s holds an unreadable entry", streams.violations_key(video_id))
                continue
            seen.setdefault(
                v.track_id,
                {
                    "id": None,
                    "video_id": video_id,
                    "track_id": v.track_id,
                    "vehicle_class": v.class_name,
                    "speed_kmh": v.speed_kmh,
                    "frame_number": v.frame_number,
                    "video_time_s": v.timestamp,
                    "detected_at": utc_iso(v.detected_at),
                    "snapshot_path": None,
                    "snapshot_url": None,
                },
            )
        return sorted(seen.values(), key=lambda r: (r["frame_number"], r["track_id"]))


class ViolationSnapshotHandler(BaseHandler):
    """``GET /api/violations/{id}/snapshot``: the JPEG crop of the flagged vehicle; 404
    ``violation_not_found`` for an unknown id, ``snapshot_not_found`` without a snapshot (none
    stored, or its file is gone)."""

    async def get(self, raw_id: str) -> None:
        violation_id = parse_violation_id(raw_id)
        row = await self.application.db.run(
            lambda s: crud.get_violation(session=s, violation_id=violation_id)
        )
        if row is None:
            raise ApiError(404, "violation_not_found", f"no violation with id {violation_id}")
        if not row.snapshot_path:
            raise ApiError(404, "snapshot_not_found", f"violation {violation_id} has no snapshot")
        storage = self.application.config.VIDEO_STORAGE_PATH
        jpeg = await self.application.db.run_blocking(_read_snapshot, row.snapshot_path, storage)
        if jpeg is None:
            raise ApiError(
                404, "snapshot_not_found", f"the snapshot file of violation {violation_id} is missing"
            )
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(jpeg)


def parse_violation_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 10 or not 0 < int(raw) <= PG_INT_MAX:
        raise ApiError(404, "violation_not_found", f"no violation with id {raw[:40]!r}")
    return int(raw)


def _read_snapshot(file_path: str, storage: Path) -> bytes | None:
    """The snapshot's bytes; None when missing or outside the storage directory."""
    path = Path(file_path).resolve()
    if not path.is_relative_to(storage.resolve()):
        log.warning("not serving %s: outside %s", path, storage)
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        log.warning("snapshot %s unreadable: %s", path, exc)
        return None


class PassagesHandler(VideoBase):
    """``GET /api/videos/{id}/passages`` (``?format=csv``): every counted vehicle of the last
    stream, by first frame."""

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        fmt = self.result_format()
        rows = await self.application.db.run(lambda s: crud.list_passages(session=s, video_id=video.id))
        items = [r.to_dict() for r in rows]
        if fmt == "json":
            self.send_json({"video_id": video.id, "passages": items})
            return
        for item in items:  # CSV: true/false as in the JSON, empty for no speed
            item["speeding"] = "true" if item["speeding"] else "false"
        self.send_csv(f"video_{video.id}_passages.csv", list(VehiclePassage.COLUMNS), items)


class ReportHandler(VideoBase):
    """``GET /api/videos/{id}/report``: the traffic report computed from the passages."""

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        rows = await self.application.db.run(lambda s: crud.list_passages(session=s, video_id=video.id))
        self.send_json(traffic_report(video.id, [r.to_dict() for r in rows], self.speed_limit(video)))


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


_CSV_COLUMNS: list[str] = list(SpeedingViolation.CSV_COLUMNS)

VIDEO_ID = r"([^/]+)"
routes: list[tuple[str, Any]] = [
    (r"/api/videos/upload", UploadHandler),
    (r"/api/videos", VideoListHandler),
    (rf"/api/videos/{VIDEO_ID}", VideoHandler),
    (rf"/api/videos/{VIDEO_ID}/calibration", CalibrationHandler),
    (rf"/api/videos/{VIDEO_ID}/thumbnail", ThumbnailHandler),
    (rf"/api/videos/{VIDEO_ID}/stream/start", StreamStartHandler),
    (rf"/api/videos/{VIDEO_ID}/stream/stop", StreamStopHandler),
    (rf"/api/videos/{VIDEO_ID}/analytics", AnalyticsHandler),
    (rf"/api/videos/{VIDEO_ID}/violations", ViolationsHandler),
    (rf"/api/videos/{VIDEO_ID}/passages", PassagesHandler),
    (rf"/api/videos/{VIDEO_ID}/report", ReportHandler),
    (r"/api/violations/([^/]+)/snapshot", ViolationSnapshotHandler),
]
