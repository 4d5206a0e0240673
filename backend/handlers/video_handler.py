"""REST handlers for videos: upload, list, detail, delete, calibration, thumbnail, start/stop,
results (analytics, violations, passages, report). Each parses its input, calls a service
(``backend.services``) and writes a response model of ``backend.schemas``; services raise
``ServiceError`` for the API's JSON errors."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from tornado.http1connection import HTTP1Connection
from tornado.web import stream_request_body

from backend.db.models import Video
from backend.handlers.base import ApiError, BaseHandler, parse_id, parse_video_id, validation_error
from backend.openapi import JPEG, Operation, Response, error
from backend.schemas import (
    AnalyticsOut,
    CalibrationIn,
    CalibrationOut,
    PassageListOut,
    StreamStartIn,
    StreamStartOut,
    StreamStopOut,
    TrafficReportOut,
    UploadForm,
    VideoListOut,
    VideoOut,
    ViolationListOut,
    ViolationOut,
)
from backend.services import camera_health, metrics, report, results, streaming, videos
from backend.services.probe import VideoLimits
from backend.services.uploads import MultipartUpload, UploadRejected, check_free_space, store_upload
from contracts.messages import Passage, VideoStatus

log = logging.getLogger("backend.videos")

# How far past the limit a streamed body is read and discarded (so that the client gets a
# clean 413 once it has sent everything) before the connection is simply cut.
DRAIN_ALLOWANCE = 64 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part

# ---- the responses several operations share (their OpenAPI declarations: backend.openapi) ----
VIDEO_404 = error("Unknown video id (video_not_found)")
AIRFLOW_502 = error("Airflow answered unexpectedly (airflow_error); nothing was changed")
AIRFLOW_503 = error("Airflow unreachable (airflow_unavailable); nothing was changed")
FORMATS = ("json", "csv")  # of the results: ?format=
FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS)}}
REPORT_WINDOW = (
    {
        "name": "from",
        "in": "query",
        "description": "ISO 8601 (Z or an offset; without one: UTC), inclusive; default: to - 24 h",
        "schema": {"type": "string"},
    },
    {
        "name": "to",
        "in": "query",
        "description": "ISO 8601 (Z or an offset; without one: UTC), exclusive; default: now",
        "schema": {"type": "string"},
    },
    {
        "name": "interval",
        "in": "query",
        "description": "default 15m; intervals start on the UTC clock boundaries of their length",
        "schema": {"type": "string", "enum": list(report.INTERVALS)},
    },
)
REPORT_CSV_COLUMNS = (
    *report.WINDOW_CSV_HEAD,
    "volume_<class>...",
    "volume_<direction>...",
    *report.WINDOW_CSV_TAIL,
)


class VideoBase(BaseHandler):
    path_params = ("video_id",)

    async def load_video(self, raw_id: str) -> Video:
        return await videos.get_video(db=self.application.db, video_id=parse_video_id(raw_id))

    async def video_outs(self, rows: Iterable[Video]) -> list[VideoOut]:
        """The rows as the API shows them (``services.videos.video_out``): every ``VideoOut`` is
        built here, a camera's with its ``health`` (``services.camera_health``; null for a file)."""
        rows = list(rows)
        health = await camera_health.health_of(self.application.redis, rows)
        limit = self.application.config.SPEED_LIMIT_KMH
        return [videos.video_out(v, default_limit_kmh=limit, health=health.get(v.id)) for v in rows]

    async def video_out(self, video: Video) -> VideoOut:
        return (await self.video_outs([video]))[0]

    def result_format(self) -> str:
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise ApiError(400, "invalid_format", f"format must be 'json' or 'csv', not {fmt[:40]!r}")
        return fmt


@stream_request_body
class UploadHandler(VideoBase):
    """``POST /api/videos/upload`` (multipart: ``video``, ``name``, optional ``roi``, ``fps``)."""

    access = {"POST": "operator"}
    audit_actions = {"POST": "upload"}
    openapi = {
        "POST": Operation(
            "Upload a video (streamed to disk, probed with OpenCV)",
            {
                201: Response("Stored", VideoOut),
                400: error(
                    "A missing field (missing_field, missing_filename); a name over 255 characters or "
                    "not UTF-8 (invalid_name: refused as soon as its part ends, before a later file "
                    "part is written); a file name that is a path (invalid_filename); a malformed body "
                    "or field (invalid_multipart, invalid_field, field_too_large); an empty, unreadable "
                    "or truncated video (empty_file, invalid_video); a bad ROI or fps (invalid_roi, "
                    "invalid_fps)"
                ),
                413: error("Over MAX_UPLOAD_MB (payload_too_large)"),
                415: error("Not a video extension (unsupported_type)"),
                422: error(
                    "The video is beyond a limit, as its headers declare (read in a subprocess before "
                    "anything decodes it) or as decoded: video_too_large (a frame over "
                    "MAX_VIDEO_PIXELS, or the header probe over PROBE_MEMORY_MB), video_too_long (over "
                    "MAX_VIDEO_DURATION_S, at the form's fps too), frame_rate_too_high (over "
                    "MAX_VIDEO_FPS, the form's fps too), probe_timeout (reading the headers took over "
                    "PROBE_TIMEOUT_S); nothing is stored"
                ),
                507: error(
                    "The video storage is full (insufficient_storage): a Content-Length over its free "
                    "space (answered before the body is read), or the disk filled while the file or "
                    "its thumbnail was written; nothing is left"
                ),
            },
            request=UploadForm,
            request_media="multipart/form-data",
            operation_id="uploadVideo",
        )
    }

    upload: MultipartUpload | None = None
    rejected: UploadRejected | None = None

    async def prepare(self) -> None:
        await super().prepare()  # host, login, role: before a byte of the body is read
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
        if length is not None and length.isdigit():
            try:  # 507 before the body when it cannot fit on the disk
                check_free_space(config.VIDEO_STORAGE_PATH, int(length))
            except UploadRejected as exc:
                metrics.UPLOADS.labels(exc.code).inc()
                raise
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # HTTP/1.1: the only server protocol here
        connection.set_max_body_size(limit + MULTIPART_SLACK + DRAIN_ALLOWANCE)
        self.upload = MultipartUpload(
            self.request.headers, config.VIDEO_STORAGE_PATH, limit + MULTIPART_SLACK
        )

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
            config = self.application.config
            video = await store_upload(
                db=self.application.db,
                storage=config.VIDEO_STORAGE_PATH,
                upload=upload,
                limits=VideoLimits.from_settings(config),
            )
        except UploadRejected as exc:
            upload.discard()
            metrics.UPLOADS.labels(exc.code).inc()
            raise
        except BaseException:
            upload.discard()
            raise
        metrics.UPLOADS.labels("ok").inc()
        self.audit_target = f"/api/videos/{video.id}"
        log.info("uploaded video %d (%s) to %s", video.id, video.name, video.file_path)
        self.send_model(await self.video_out(video), 201)

    def on_connection_close(self) -> None:
        if self.upload is not None:
            self.upload.discard()
        super().on_connection_close()

    def on_finish(self) -> None:
        if self.upload is not None and self.get_status() != 201:
            self.upload.discard()
        super().on_finish()


class VideoListHandler(VideoBase):
    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation("List videos", {200: Response("Videos", VideoListOut)}, operation_id="listVideos")
    }

    async def get(self) -> None:
        rows = await videos.list_videos(db=self.application.db)
        self.send_model(VideoListOut(videos=await self.video_outs(rows)))


class VideoHandler(VideoBase):
    access = {"GET": "viewer", "DELETE": "admin"}
    audit_actions = {"DELETE": "delete"}
    openapi = {
        "GET": Operation(
            "One video", {200: Response("The video", VideoOut), 404: VIDEO_404}, operation_id="getVideo"
        ),
        "DELETE": Operation(
            "Delete the video, its file and its results (analytics, violations, passages)",
            {
                204: Response("Deleted"),
                404: VIDEO_404,
                409: error("The video is being streamed (stop it first)"),
            },
            operation_id="deleteVideo",
        ),
    }

    async def get(self, raw_id: str) -> None:
        self.send_model(await self.video_out(await self.load_video(raw_id)))

    async def delete(self, raw_id: str) -> None:
        """``DELETE /api/videos/{id}``: 204; the row, its results, files and Redis keys go; 409
        while it streams."""
        video = await self.load_video(raw_id)
        app = self.application
        await videos.delete_video(
            db=app.db,
            redis=app.redis,
            airflow=app.airflow,
            storage=app.config.VIDEO_STORAGE_PATH,
            video=video,
        )
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class CalibrationHandler(VideoBase):
    """``PUT /api/videos/{id}/calibration``: ROI + point pairs -> homography (metres).

    The body has exactly the fields of ``CalibrationIn`` (the OpenAPI document's schema of it);
    ROI and image points must lie inside the video's frame."""

    access = {"PUT": "operator"}
    audit_actions = {"PUT": "calibrate"}
    openapi = {
        "PUT": Operation(
            "Store ROI and fit the image -> road homography",
            {
                200: Response("Calibrated", CalibrationOut),
                400: error(
                    "Malformed JSON, unknown field, ROI, points, a point outside the frame, or speed "
                    "limit (invalid_speed_limit); field names the body's field at fault"
                ),
                404: VIDEO_404,
                422: error("Degenerate points (collinear, duplicates): degenerate_calibration"),
            },
            request=CalibrationIn,
            operation_id="saveCalibration",
        )
    }

    async def put(self, raw_id: str) -> None:
        parse_video_id(raw_id)
        body = parse_calibration(self.json_body())
        video = await self.load_video(raw_id)
        updated, error_m = await videos.calibrate(db=self.application.db, video=video, body=body)
        self.send_model(CalibrationOut(video=await self.video_out(updated), reprojection_error_m=error_m))


CALIBRATION_FIELDS: tuple[str, ...] = tuple(CalibrationIn.model_fields)
RENAMED_CALIBRATION_FIELDS = {"roi": "roi_polygon"}


def parse_calibration(payload: Any) -> CalibrationIn:
    """The body as ``CalibrationIn``; 400 ``invalid_calibration`` (``invalid_speed_limit`` for the
    limit) naming what is wrong, every unknown field first."""
    _refuse_unknown_fields(payload)
    try:
        return CalibrationIn.model_validate(payload)
    except ValidationError as exc:
        field = exc.errors()[0]["loc"][:1]
        code = "invalid_speed_limit" if field == ("speed_limit_kmh",) else "invalid_calibration"
        raise validation_error(exc, code) from exc


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
    raise ApiError(400, "invalid_calibration", message, field=unknown[0])


class ThumbnailHandler(VideoBase):
    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "First frame as JPEG",
            {200: JPEG, 404: error("Unknown video, or its file is unreadable (thumbnail_unavailable)")},
            operation_id="getThumbnail",
        )
    }

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        storage = self.application.config.VIDEO_STORAGE_PATH
        self.send_jpeg(await videos.thumbnail(db=self.application.db, video=video, storage=storage))


class StreamStartHandler(VideoBase):
    """``POST /api/videos/{id}/stream/start`` (optional body ``{"realtime": bool}``, default true):
    trigger the DAG (``services.streaming.start``); 409 if already running, 503 if Airflow is down."""

    access = {"POST": "operator"}
    audit_actions = {"POST": "start"}
    openapi = {
        "POST": Operation(
            "Trigger DAG video_streaming_pipeline with conf {video_id, realtime}",
            {
                201: Response("The DAG run", StreamStartOut),
                400: error(
                    "Malformed JSON or body (invalid_json, invalid_body), or realtime false for a "
                    "camera (invalid_realtime: a camera streams live only)"
                ),
                404: VIDEO_404,
                409: error("Already streaming"),
                502: AIRFLOW_502,
                503: AIRFLOW_503,
            },
            request=StreamStartIn,
            request_required=False,
            description="Clears the video's stop flag, progress, violations list and live analytics "
            "in Redis, then triggers the DAG. The body is optional (empty: realtime true). A file's "
            "stored results of a previous run are replaced; a camera's accumulate over its runs "
            "(run_id).",
            operation_id="startStream",
        )
    }

    async def post(self, raw_id: str) -> None:
        body = self._body()
        video = await self.load_video(raw_id)
        app = self.application
        run = await streaming.start(
            db=app.db,
            redis=app.redis,
            airflow=app.airflow,
            storage=app.config.VIDEO_STORAGE_PATH,
            video=video,
            realtime=body.realtime,
        )
        self.send_model(StreamStartOut(video_id=video.id, status=VideoStatus.PROCESSING, dag_run=run), 201)

    def _body(self) -> StreamStartIn:
        if not self.request.body or not self.request.body.strip():
            return StreamStartIn()
        return self.body_of(StreamStartIn)


class StreamStopHandler(VideoBase):
    """``POST /api/videos/{id}/stream/stop``: raise the stop flag; 409 when nothing runs."""

    access = {"POST": "operator"}
    audit_actions = {"POST": "stop"}
    openapi = {
        "POST": Operation(
            "Ask the running pipeline to stop",
            {
                202: Response("Stopping", StreamStopOut),
                404: VIDEO_404,
                409: error("Not streaming"),
                502: AIRFLOW_502,
                503: AIRFLOW_503,
            },
            operation_id="stopStream",
        )
    }

    async def post(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        app = self.application
        run_ids = await streaming.stop(db=app.db, redis=app.redis, airflow=app.airflow, video=video)
        out = StreamStopOut(video_id=video.id, status=VideoStatus.STOPPING, dag_run_ids=run_ids)
        self.send_model(out, 202)


class AnalyticsHandler(VideoBase):
    """Final ``video_analytics`` row, else the live snapshot (``services.results.analytics``)."""

    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "Final analytics (video_analytics) or the live snapshot",
            {200: Response("Analytics", AnalyticsOut), 404: error("Unknown video or no analytics yet")},
            operation_id="getAnalytics",
        )
    }

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        out = await results.analytics(db=self.application.db, redis=self.application.redis, video_id=video.id)
        self.send_model(AnalyticsOut(out), exclude_unset=True)  # live: the snapshot's keys only


class ViolationsHandler(VideoBase):
    """``GET /api/videos/{id}/violations`` (``?format=csv``): the stored rows, else the live list
    (``services.results.violations``); ``source`` says which."""

    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "Speeding violations (JSON or CSV)",
            {
                200: Response("Violations", ViolationListOut, media="text/csv", csv_of=ViolationOut),
                400: error("Unknown format"),
                404: VIDEO_404,
            },
            query=(FORMAT,),
            operation_id="listViolations",
        )
    }

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        fmt = self.result_format()
        out = await results.violations(
            db=self.application.db, redis=self.application.redis, video_id=video.id
        )
        if fmt == "json":
            self.send_model(out)
            return
        rows = [v.model_dump() for v in out.violations]
        self.send_csv(f"video_{video.id}_violations.csv", results.VIOLATION_CSV_COLUMNS, rows)


class ViolationSnapshotHandler(BaseHandler):
    """``GET /api/violations/{id}/snapshot``: the JPEG crop of the flagged vehicle."""

    access = {"GET": "viewer"}
    path_params = ("violation_id",)
    openapi = {
        "GET": Operation(
            "JPEG crop of the flagged vehicle",
            {
                200: JPEG,
                404: error("Unknown violation (violation_not_found) or no snapshot (snapshot_not_found)"),
            },
            operation_id="getViolationSnapshot",
        )
    }

    async def get(self, raw_id: str) -> None:
        violation_id = parse_id(raw_id, "violation_not_found", "violation")
        jpeg = await videos.violation_snapshot(
            db=self.application.db,
            storage=self.application.config.VIDEO_STORAGE_PATH,
            violation_id=violation_id,
        )
        self.send_jpeg(jpeg)


class PassagesHandler(VideoBase):
    """``GET /api/videos/{id}/passages`` (``?format=csv``): every counted vehicle of the last
    stream, by first frame."""

    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "Every counted vehicle of the last stream, by first frame (JSON or CSV)",
            {
                200: Response("Passages", PassageListOut, media="text/csv", csv_of=Passage),
                400: error("Unknown format"),
                404: VIDEO_404,
            },
            query=(FORMAT,),
            operation_id="listPassages",
        )
    }

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        fmt = self.result_format()
        items = await results.passages(db=self.application.db, video_id=video.id)
        if fmt == "json":
            self.send_model(PassageListOut(video_id=video.id, passages=items))
            return
        rows = [p.model_dump() for p in items]
        for row in rows:  # CSV: true/false as in the JSON, empty for no speed
            row["speeding"] = "true" if row["speeding"] else "false"
        self.send_csv(f"video_{video.id}_passages.csv", results.PASSAGE_CSV_COLUMNS, rows)


class ReportHandler(VideoBase):
    """``GET /api/videos/{id}/report``: the traffic report computed from the passages; with any of
    ``from``, ``to``, ``interval`` (or ``format=csv``) the traffic study over that window of
    wall-clock time (``services.report.parse_window`` for the defaults and the 400s), JSON or
    CSV (one row per interval, then the total)."""

    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "Traffic report: totals, class mix, speed histogram, mean and 85th percentile, volume per "
            "minute; over a window: the traffic study per interval (JSON or CSV)",
            {
                200: Response(
                    "Report (ReportOut), or with a window WindowReportOut or its CSV (one row per "
                    "interval, then start total)",
                    TrafficReportOut,
                    media="text/csv",
                    csv_columns=REPORT_CSV_COLUMNS,
                ),
                400: error(
                    "Unknown format (invalid_format); unreadable date, from >= to or more than 2000 "
                    "intervals (invalid_window); interval not 5m, 15m or 1h (invalid_interval)"
                ),
                404: VIDEO_404,
            },
            query=(*REPORT_WINDOW, FORMAT),
            description="Without from, to and interval (and format json): the report of every "
            "passage of the video. With any of them, or format=csv: the traffic study over [from, "
            "to) of wall-clock time (passages without passed_at are left out), per interval and in "
            "total: volume by class and direction, mean speed, V50, V85, the 10 km/h pace band and "
            "its share, the share over the video's limit, mean headway.",
            operation_id="getReport",
        )
    }

    WINDOW_ARGUMENTS = ("from", "to", "interval")

    async def get(self, raw_id: str) -> None:
        video = await self.load_video(raw_id)
        fmt = self.result_format()
        db, default = self.application.db, self.application.config.SPEED_LIMIT_KMH
        args = {name: self.get_query_argument(name, None) for name in self.WINDOW_ARGUMENTS}
        if fmt == "json" and all(value is None for value in args.values()):
            self.send_model(await results.report(db=db, video=video, default_limit_kmh=default))
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        window = report.parse_window(args["from"], args["to"], args["interval"], now=now)
        out = await results.report_window(db=db, video=video, window=window, default_limit_kmh=default)
        if fmt == "json":
            self.send_model(out)
            return
        columns, rows = report.window_csv(out.model_dump(by_alias=True))
        name = f"video_{video.id}_report_{window.start:%Y%m%dT%H%M%SZ}_{window.end:%Y%m%dT%H%M%SZ}"
        self.send_csv(f"{name}_{window.interval}.csv", columns, rows)


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
