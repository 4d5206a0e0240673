"""REST handlers for cameras: add (with a connection test), list, rename or re-point, refresh the
snapshot to calibrate on. A camera is a ``videos`` row (``source_kind`` camera): detail,
calibration, thumbnail, results and deletion are the videos' routes.

Access: a camera makes the backend connect where it is told (any host its network reaches):
adding, re-pointing and refreshing one needs the operator role; viewers may list them."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from backend.db.models import Video
from backend.handlers.video_handler import VIDEO_404, VideoBase
from backend.openapi import Operation, Response, error
from backend.schemas import CameraIn, CameraUpdateIn, VideoListOut, VideoOut
from backend.services import cameras, videos

M = TypeVar("M", bound=BaseModel)

CAMERA_422 = error(
    "The camera cannot be read: camera_unreachable, camera_auth_failed, camera_not_found, "
    "camera_no_video, camera_unsupported_codec or camera_timeout"
)


class CameraBase(VideoBase):
    async def load_camera(self, raw_id: str) -> Video:
        return cameras.ensure_camera(await self.load_video(raw_id))

    async def send_updated(self, video: Video, name: str | None, url: str | None) -> None:
        app = self.application
        updated = await cameras.update_camera(
            db=app.db,
            storage=app.config.VIDEO_STORAGE_PATH,
            video=video,
            name=name,
            url=url,
            timeout_s=app.config.CAMERA_TIMEOUT_S,
        )
        self.send_model(await self.video_out(updated))


class CameraListHandler(CameraBase):
    access = {"GET": "viewer", "POST": "operator"}
    audit_actions = {"POST": "camera_add"}
    openapi = {
        "GET": Operation(
            "List cameras", {200: Response("Cameras", VideoListOut)}, operation_id="listCameras"
        ),
        "POST": Operation(
            "Add a camera: a frame is grabbed to test the connection first",
            {
                201: Response(
                    "Added (a video row, source_kind camera; its thumbnail is the snapshot)", VideoOut
                ),
                400: error(
                    "Malformed JSON or body (invalid_body), unsupported scheme or malformed URL (invalid_url)"
                ),
                422: CAMERA_422,
            },
            request=CameraIn,
            description="Nothing is stored when the camera cannot be read. The URL's credentials "
            "are kept for the connection and shown as *** in every response.",
            operation_id="createCamera",
        ),
    }

    async def get(self) -> None:
        """``GET /api/cameras``: the camera sources (their URLs redacted) with their health."""
        rows = await videos.list_videos(db=self.application.db)
        cams = [v for v in rows if v.source_kind == "camera"]
        self.send_model(VideoListOut(videos=await self.video_outs(cams)))

    async def post(self) -> None:
        """``POST /api/cameras`` ``{"name", "url"}``: 201 once a frame was grabbed, else 400
        ``invalid_url`` / 422 ``camera_*`` and nothing stored."""
        body = self.body_of(CameraIn)
        app = self.application
        video = await cameras.create_camera(
            db=app.db,
            storage=app.config.VIDEO_STORAGE_PATH,
            name=body.name,
            url=body.url,
            timeout_s=app.config.CAMERA_TIMEOUT_S,
        )
        self.audit_target = f"/api/cameras/{video.id}"
        self.send_model(await self.video_out(video), 201)


class CameraHandler(CameraBase):
    access = {"PUT": "operator"}
    audit_actions = {"PUT": "camera_update"}
    openapi = {
        "PUT": Operation(
            "Rename a camera and/or point it at another URL (tested first)",
            {
                200: Response("Updated", VideoOut),
                400: error("Malformed JSON or body, bad URL"),
                404: VIDEO_404,
                409: error("The id is an uploaded video, not a camera (not_a_camera)"),
                422: CAMERA_422,
            },
            request=CameraUpdateIn,
            operation_id="updateCamera",
        )
    }

    async def put(self, raw_id: str) -> None:
        """``PUT /api/cameras/{id}`` ``{"name"?, "url"?}``: a new URL is tested first."""
        body = self.body_of(CameraUpdateIn)
        await self.send_updated(await self.load_camera(raw_id), body.name, body.url)


class CameraSnapshotHandler(CameraBase):
    access = {"POST": "operator"}
    audit_actions = {"POST": "camera_snapshot"}
    openapi = {
        "POST": Operation(
            "Grab a new frame from the camera to calibrate on (the thumbnail)",
            {
                200: Response("Refreshed", VideoOut),
                404: VIDEO_404,
                409: error("Not a camera (not_a_camera)"),
                422: CAMERA_422,
            },
            operation_id="snapshotCamera",
        )
    }

    async def post(self, raw_id: str) -> None:
        """``POST /api/cameras/{id}/snapshot``: grab a new frame to calibrate on (the thumbnail):
        the camera re-pointed at its own URL."""
        video = await self.load_camera(raw_id)
        await self.send_updated(video, None, video.source_url)


CAMERA_ID = r"([^/]+)"
routes = [
    (r"/api/cameras", CameraListHandler),
    (rf"/api/cameras/{CAMERA_ID}", CameraHandler),
    (rf"/api/cameras/{CAMERA_ID}/snapshot", CameraSnapshotHandler),
]
