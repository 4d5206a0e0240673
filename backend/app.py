"""Tornado application: REST API + WebSocket hub on port 8686 (``python -m backend.app``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketHandler

from backend.db.session import Database
from backend.handlers import auth_handler, camera_handler, system_handler, video_handler, websocket_routing
from backend.handlers.frontend_handler import FrontendHandler
from backend.services import accounts, metrics
from backend.services.airflow_client import AirflowClient
from backend.services.hub import Hub
from backend.services.instances import InstanceRegistry
from backend.services.login_limit import LoginLimiter
from backend.services.subscriptions import SubscriptionCache
from backend.settings import Settings
from contracts import streams

log = logging.getLogger("backend")


def all_routes() -> list[tuple[str, Any]]:
    return [
        *video_handler.routes,
        *camera_handler.routes,
        *auth_handler.routes,
        *websocket_routing.routes,
        *system_handler.routes,
    ]


class TrafficApplication(tornado.web.Application):
    """Receives its services in the constructor (CONVENTIONS.md, Thin Tornado layer)."""

    def __init__(
        self,
        *,
        config: Settings,
        db: Database,
        redis: aioredis.Redis,
        airflow: AirflowClient,
        hub: Hub | None = None,
        cookie_secret: str | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.redis = redis
        self.airflow = airflow
        self.hub = hub or Hub(
            SubscriptionCache(redis, ttl_s=config.SUBSCRIPTION_TTL_S, instance=config.instance_name)
        )
        # This instance in the registry the bridge routes by (issue 18), from start_background
        self.registry = InstanceRegistry(redis, config.instance_name, config.ingest_url)
        metrics.bind_hub(self.hub)  # /metrics reads the hub's counters (as /api/websocket/status)
        self.login_limiter = LoginLimiter(redis, limit=config.LOGIN_FAILURES_PER_MINUTE)
        self._tasks: set[asyncio.Task] = set()
        self.websockets: set[WebSocketHandler] = set()  # open client and ingest connections
        self._refresher: PeriodicCallback | None = None
        self._heartbeat: PeriodicCallback | None = None
        config.VIDEO_STORAGE_PATH.mkdir(parents=True, exist_ok=True)
        super().__init__(
            all_routes(),
            default_handler_class=FrontendHandler,  # the dashboard at /, else JSON 404
            websocket_ping_interval=config.WS_PING_INTERVAL_S,
            # A silent client is dropped WS_IDLE_TIMEOUT_S after its last pong: a ping every
            # interval, then the rest of the idle timeout for the pong (Tornado wants the pong
            # timeout no longer than the interval).
            websocket_ping_timeout=min(
                config.WS_PING_INTERVAL_S, max(1.0, config.WS_IDLE_TIMEOUT_S - config.WS_PING_INTERVAL_S)
            ),
            compress_response=False,
            cookie_secret=cookie_secret or config.cookie_secret(),
        )

    def origin_allowed(self, origin: str) -> bool:
        allowed = self.config.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_background(self) -> None:
        """Refresh the subscription keys' TTL while anyone is subscribed; register this instance
        and keep its registration alive (the bridge delivers to registered instances)."""
        self._refresher = PeriodicCallback(
            lambda: self.spawn(self.hub.refresh()), self.config.SUBSCRIPTION_REFRESH_S * 1000
        )
        self._refresher.start()
        self.spawn(self.registry.beat())
        self._heartbeat = PeriodicCallback(
            lambda: self.spawn(self.registry.beat()), streams.BACKEND_HEARTBEAT_S * 1000
        )
        self._heartbeat.start()

    def stop_background(self) -> None:
        for callback in (self._refresher, self._heartbeat):
            if callback is not None:
                callback.stop()

    def close_websockets(self, reason: str = "server shutting down") -> int:
        """Close every open WebSocket with 1001 (going away): browsers and the bridge learn at
        once that they must reconnect (``close_all_connections`` leaves upgraded ones open)."""
        handlers = list(self.websockets)
        for handler in handlers:
            handler.close(1001, reason)
        return len(handlers)

    def record_request(self, handler: tornado.web.RequestHandler) -> None:
        name = type(handler).__name__
        metrics.HTTP_REQUESTS.labels(handler.request.method, name, str(handler.get_status())).inc()
        metrics.HTTP_LATENCY.labels(name).observe(handler.request.request_time())

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        if handler.request.path == "/metrics" and handler.get_status() < 400:
            return
        super().log_request(handler)


def build_app(config: Settings) -> TrafficApplication:
    return TrafficApplication(
        config=config,
        db=Database(config.DATABASE_URL),
        redis=aioredis.Redis(
            host=config.REDIS_HOST,
            port=config.REDIS_PORT,
            password=config.REDIS_PASSWORD or None,
            socket_timeout=5,
        ),
        airflow=AirflowClient(
            config.AIRFLOW_API_URL,
            username=config.AIRFLOW_USERNAME,
            password=config.AIRFLOW_PASSWORD,
            dag_id=config.AIRFLOW_DAG_ID,
            timeout_s=config.AIRFLOW_TIMEOUT_S,
            retries=config.AIRFLOW_RETRIES,
            backoff_s=config.AIRFLOW_RETRY_BACKOFF_S,
        ),
    )


async def bootstrap_admin(app: TrafficApplication) -> None:
    """A database without users gets an ``admin`` with a generated password, logged once (the
    demo creates it before, and shows it in its banner)."""
    password = await app.db.run(lambda s: accounts.ensure_admin(session=s))
    if password:
        log.warning(
            "FIRST START: created user 'admin' with password %s (shown once; change it with "
            "`traffic-admin reset-password admin`)",
            password,
        )


async def serve(config: Settings) -> None:
    app = build_app(config)
    await bootstrap_admin(app)
    # The upload handler raises its own limit per request; everything else stays small.
    # A body must have arrived BODY_TIMEOUT_S after its headers: a slow upload is cut off (its
    # partial file removed) instead of holding a connection for ever.
    server = HTTPServer(
        app,
        max_body_size=16 * 1024 * 1024,
        idle_connection_timeout=120,
        body_timeout=config.BODY_TIMEOUT_S,
        # behind nginx: the client's address (rate limit, audit) and scheme (the cookie's Secure)
        xheaders=config.TRUST_PROXY_HEADERS,
    )
    server.listen(config.BACKEND_PORT, address=config.BACKEND_HOST)
    app.start_background()
    log.info(
        "backend listening on %s:%d (instance %s, ingest %s)",
        config.BACKEND_HOST,
        config.BACKEND_PORT,
        config.instance_name,
        config.ingest_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    app.stop_background()
    await app.registry.leave()  # the bridge stops routing here at once
    if app.close_websockets():
        await asyncio.sleep(0.2)  # let the close frames go out
    await server.close_all_connections()
    await app.redis.aclose()
    app.db.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
