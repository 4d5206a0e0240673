"""WebSocket hub endpoints (DESIGN.md, WebSocket).

``/ws/client/stream``: browsers subscribe/unsubscribe to ``processed_frame_{id}`` and
``analytics_metrics_{id}``; bad messages get ``{"type": "error"}`` and the connection stays.
``/ws/backend/processed`` and ``/ws/backend/analytics``: the bridge's ingest, refused without
the internal token. ``GET /api/websocket/status``: connection and channel counts.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from backend.db import crud
from backend.handlers.base import BaseHandler, bearer_ok
from backend.openapi import UNAUTHORIZED_401, UPGRADE, USER_SECURITY, Operation, Response, error
from backend.schemas import (
    AnalyticsIngest,
    AnalyticsMessage,
    ClientAction,
    ErrorMessage,
    FrameMessage,
    ProcessedFrameIngest,
    SubscriptionAck,
    WebSocketStatusOut,
    error_body,
    parse_channel,
)
from backend.services import access, metrics
from backend.services.accounts import Principal
from backend.services.errors import ServiceError
from backend.services.hub import ClientQueue

if TYPE_CHECKING:
    from backend.app import TrafficApplication

log = logging.getLogger("backend.websocket")


class ClientStreamHandler(WebSocketHandler):
    application: TrafficApplication
    client: ClientQueue | None = None
    openapi = {
        "GET": Operation(
            "WebSocket: subscribe to processed_frame_{id} / analytics_metrics_{id}",
            {
                101: UPGRADE,
                401: UNAUTHORIZED_401,
                403: Response("Origin refused (Tornado's text answer)", media="text/html"),
            },
            description="Needs a viewer at least: the session cookie (or a bearer API token), "
            "checked before the upgrade. The Origin must be allowed (ALLOWED_ORIGINS) or the "
            "backend's own.",
            security=USER_SECURITY,
            operation_id="clientStream",
        )
    }

    principal: Principal | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Before the upgrade: the Host allowed, the caller logged in (session cookie, or a bearer
        API token for scripts), else a JSON 400/401 and no socket."""
        try:
            access.check_host(self.application, self.request)
            self.principal = await access.authenticate(self, self.application)
            if self.principal is None:
                raise ServiceError(
                    401, "unauthorized", "log in first: the live stream needs a session or an API token"
                )
        except ServiceError as exc:
            log.warning(
                "[CLIENT-CHANNEL] refused %s from %s: %s", exc.code, self.request.remote_ip, exc.message
            )
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(error_body(exc.code, exc.message)))
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        # An allowed origin (ALLOWED_ORIGINS) or the backend's own (its Host, held to ALLOWED_HOSTS
        # above): a page of another site cannot use the visitor's session cookie here.
        allowed = access.origin_allowed(self.application, self.request, origin)
        if not allowed:
            log.warning("[CLIENT-CHANNEL] refused origin %s", origin)
        return allowed

    def open(self) -> None:
        config = self.application.config
        self.client = ClientQueue(
            self.write_message,
            self.close,
            frame_limit=config.WS_FRAME_QUEUE,
            analytics_limit=config.WS_ANALYTICS_QUEUE,
        )
        self.application.hub.register(self.client)
        self.application.websockets.add(self)
        user = self.principal.username if self.principal else "?"
        log.info("[CLIENT-CHANNEL] client %s connected from %s", user, self.request.remote_ip)

    def _reply(self, message: Any) -> None:
        if self.client is not None:
            self.client.put_control(message.model_dump_json())

    async def on_message(self, message: str | bytes) -> None:
        try:
            payload = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._reply(ErrorMessage(message="invalid JSON"))
            return
        if not isinstance(payload, dict) or payload.get("action") not in ("subscribe", "unsubscribe"):
            action = payload.get("action") if isinstance(payload, dict) else None
            self._reply(ErrorMessage(message=f"unknown action {action!r}: use 'subscribe' or 'unsubscribe'"))
            return
        try:
            request = ClientAction.model_validate(payload)
        except ValidationError:
            self._reply(ErrorMessage(message="a message needs exactly 'action' and 'channel' (a string)"))
            return
        parsed = parse_channel(request.channel)
        if parsed is None:
            self._reply(ErrorMessage(message=f"unknown channel {request.channel!r}"))
            return
        hub = self.application.hub
        assert self.client is not None
        if request.action == "subscribe":
            video_id = parsed[1]
            video = await self.application.db.run(lambda s: crud.get_video(session=s, video_id=video_id))
            if video is None:
                self._reply(ErrorMessage(message=f"unknown channel {request.channel!r}: no video {video_id}"))
                return
            if self.client.closed:  # the client left while we looked the video up
                return
            await hub.subscribe(self.client, request.channel)
            status = "subscribed"
        else:
            await hub.unsubscribe(self.client, request.channel)
            status = "unsubscribed"
        log.info("[CLIENT-CHANNEL] %s %s", status, request.channel)
        self._reply(SubscriptionAck(channel=request.channel, status=status))

    def on_close(self) -> None:
        self.application.websockets.discard(self)
        if self.client is not None:
            self.application.spawn(self.application.hub.remove(self.client))
            log.info("[CLIENT-CHANNEL] client disconnected")


class IngestHandler(WebSocketHandler):
    """Base of the bridge -> backend endpoints: internal token required."""

    application: TrafficApplication
    kind = ""
    message_type = ""  # the ingest message's ``type``
    client_type = ""  # the clients' message ``type`` (the ingest metric's ``kind`` label)
    message_model: type[ProcessedFrameIngest] | type[AnalyticsIngest]

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not self._token_ok():
            log.warning("[%s] refused ingest without a valid token from %s", self.tag, self.request.remote_ip)
            self.set_status(401)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(error_body("unauthorized", "ingest needs the internal token")))
            return
        await super().get(*args, **kwargs)

    def _token_ok(self) -> bool:
        return bearer_ok(self.request, self.application.config.INTERNAL_TOKEN, "X-Internal-Token")

    def check_origin(self, origin: str) -> bool:
        return False  # only the bridge connects here, and it sends no Origin

    @property
    def tag(self) -> str:
        return "BACKEND-FRAME-CHANNEL" if self.kind == "processed" else "BACKEND-ANALYTICS-CHANNEL"

    def open(self) -> None:
        self.application.hub.ingest_connections[self.kind] += 1
        self.application.websockets.add(self)
        log.info("[%s] bridge connected", self.tag)

    def on_close(self) -> None:
        self.application.websockets.discard(self)
        self.application.hub.ingest_connections[self.kind] -= 1
        log.info("[%s] bridge disconnected", self.tag)

    def reject(self, message: str) -> None:
        try:
            self.write_message(ErrorMessage(message=message).model_dump_json())
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        try:
            ingest = self.message_model.model_validate_json(message)
        except ValidationError as exc:
            self.reject(f"invalid {self.message_type} message: {exc.errors()[0]['msg']}")
            return
        metrics.INGEST_MESSAGES.labels(self.client_type).inc()
        data = ingest.data
        if not self.application.hub.repeats.fresh(
            self.kind, data.video_id, data.frame_number, data.produced_at, data.run_id
        ):
            log.info(
                "[%s] video %d frame %d already sent; repeat dropped",
                self.tag,
                data.video_id,
                data.frame_number,
            )
            return
        n = self.broadcast(ingest)
        log.debug("[%s] video %d frame %d -> %d", self.tag, data.video_id, data.frame_number, n)

    def broadcast(self, ingest: Any) -> int:
        """Send the clients' envelope of ``ingest`` to the channel's subscribers; returns how many."""
        raise NotImplementedError


class ProcessedIngestHandler(IngestHandler):
    kind, message_type, client_type = "processed", "processed_frame", "frame"
    message_model = ProcessedFrameIngest
    openapi = {
        "GET": Operation(
            "WebSocket ingest of processed frames (internal token)",
            {101: UPGRADE, 401: error("No or wrong token")},
            security=("internalToken",),
            operation_id="ingestProcessed",
        )
    }

    def broadcast(self, ingest: ProcessedFrameIngest) -> int:
        hub = self.application.hub
        hub.note_frame(ingest.data)
        # Encoded once here; every subscriber's socket gets the same bytes (sent as a text frame).
        return hub.broadcast_frame(ingest.data.video_id, FrameMessage(data=ingest.data).to_json_bytes())


class AnalyticsIngestHandler(IngestHandler):
    kind, message_type, client_type = "analytics", "analytics_update", "analytics"
    message_model = AnalyticsIngest
    openapi = {
        "GET": Operation(
            "WebSocket ingest of analytics updates (internal token)",
            {101: UPGRADE, 401: error("No or wrong token")},
            security=("internalToken",),
            operation_id="ingestAnalytics",
        )
    }

    def broadcast(self, ingest: AnalyticsIngest) -> int:
        envelope = AnalyticsMessage(data=ingest.data).to_json_bytes()
        return self.application.hub.broadcast_analytics(ingest.data.video_id, envelope)


class WebSocketStatusHandler(BaseHandler):
    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "WebSocket connections, channel subscribers, dropped frames and repeats (totals since start)",
            {200: Response("Status", WebSocketStatusOut)},
            operation_id="websocketStatus",
        )
    }

    def get(self) -> None:
        self.send_model(WebSocketStatusOut.model_validate(self.application.hub.status()))


routes: list[tuple[str, Any]] = [
    (r"/ws/client/stream", ClientStreamHandler),
    (r"/ws/backend/processed", ProcessedIngestHandler),
    (r"/ws/backend/analytics", AnalyticsIngestHandler),
    (r"/api/websocket/status", WebSocketStatusHandler),
]
