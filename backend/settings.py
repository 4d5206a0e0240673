"""Backend settings: one typed class reading the environment (DESIGN.md, Configuration).

Read once at start-up (``backend.app.main``) and passed down; the names every service shares
(DATABASE_URL, REDIS_*, BACKEND_URL, INTERNAL_TOKEN, VIDEO_STORAGE_PATH, MODEL_PATH,
SPEED_LIMIT_KMH) come from ``contracts.settings.CommonSettings``.
"""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path

from pydantic import Field, model_validator

from contracts import streams
from contracts.settings import CommonSettings, ensure_secret, resolve_token, weak_secret

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(CommonSettings):
    # The backend's address: loopback unless asked (make demo HOST=0.0.0.0; compose: 0.0.0.0
    # inside its container, reached through nginx only)
    BACKEND_HOST: str = "127.0.0.1"
    BACKEND_PORT: int = 8686
    ALLOWED_ORIGINS: str = "http://localhost:4200,http://127.0.0.1:4200,http://localhost:8686"
    MAX_UPLOAD_MB: float = Field(default=500, gt=0)
    # Input and load (issue 17). An uploaded video is refused (422) when its headers declare more
    # than these: read by a probe in a subprocess (backend/services/probe.py), its memory capped
    # at PROBE_MEMORY_MB and killed after PROBE_TIMEOUT_S, before anything decodes the clip.
    MAX_VIDEO_PIXELS: int = Field(default=7680 * 4320, gt=0)  # width x height of one frame (8K)
    MAX_VIDEO_DURATION_S: float = Field(default=24 * 3600, gt=0)
    MAX_VIDEO_FPS: float = Field(default=240, gt=0)
    PROBE_TIMEOUT_S: float = Field(default=20, gt=0)
    PROBE_MEMORY_MB: int = Field(default=1024, ge=256)
    # A request's body must have arrived this long after its headers (slow uploads are cut off)
    BODY_TIMEOUT_S: float = Field(default=3600, gt=0)
    # The built Angular dashboard (``ng build``, project ``traffic-dashboard``), served at ``/``
    # when its index.html exists; a relative path is taken from the repository root.
    FRONTEND_DIST: Path = Path("frontend/dist/traffic-dashboard/browser")

    AIRFLOW_API_URL: str = "http://127.0.0.1:8080"
    AIRFLOW_USERNAME: str = "admin"
    # Never an example value (admin, change-me, ...). Empty: the one airflow/run_standalone.sh
    # generates into SECRETS_DIR/airflow_password (whichever of the two starts first makes it)
    AIRFLOW_PASSWORD: str = ""
    AIRFLOW_DAG_ID: str = streams.DAG_ID
    AIRFLOW_TIMEOUT_S: float = Field(default=10.0, gt=0)
    AIRFLOW_RETRIES: int = Field(default=3, ge=1)
    AIRFLOW_RETRY_BACKOFF_S: float = Field(default=0.5, ge=0)

    # Access (issue 17). Host names the backend answers to (a DNS-rebinding page uses its own:
    # refused); "*" any. Behind a proxy, add the name users type.
    ALLOWED_HOSTS: str = "localhost,127.0.0.1,::1"
    # The session cookie's signing key; empty: generated once into SECRETS_DIR/cookie_secret
    COOKIE_SECRET: str = ""
    # A login lasts this long (hours)
    SESSION_TTL_H: float = Field(default=12.0, gt=0, le=24 * 30)
    # Failed logins per client address and minute before 429
    LOGIN_FAILURES_PER_MINUTE: int = Field(default=10, ge=1)
    # Behind a reverse proxy (compose's nginx): take the client address and scheme from
    # X-Forwarded-For / X-Forwarded-Proto (the rate limit and the audit log's address)
    TRUST_PROXY_HEADERS: bool = False
    # Cameras: how long a connection test (open, first frame) may take
    CAMERA_TIMEOUT_S: float = Field(default=5.0, gt=0, le=60)

    # WebSocket hub
    WS_PING_INTERVAL_S: float = Field(default=30.0, gt=0)
    WS_IDLE_TIMEOUT_S: float = Field(default=60.0, gt=0)
    # Frames queued per client, older ones dropped beyond it. Spark delivers a micro-batch (~1 s of
    # video) at once: 32 lets a normal browser show every frame, a stalled one costs ~1 MB.
    WS_FRAME_QUEUE: int = Field(default=32, ge=1)
    WS_ANALYTICS_QUEUE: int = Field(default=10_000, ge=1)  # never dropped: over this, disconnect
    SUBSCRIPTION_TTL_S: int = Field(default=streams.SUBSCRIPTION_TTL_S, gt=0)
    SUBSCRIPTION_REFRESH_S: float = Field(default=60.0, gt=0)
    # Several instances behind one address (issue 18): this instance's name in the Redis registry
    # and in the subscription sets (empty: "{hostname}-{BACKEND_PORT}"), and the address the bridge
    # reaches its ingest WebSockets on (empty: BACKEND_HOST, or this host's address when BACKEND_HOST
    # is a wildcard such as 0.0.0.0, with BACKEND_PORT).
    BACKEND_INSTANCE: str = ""
    BACKEND_INGEST_URL: str = ""

    def cookie_secret(self) -> str:
        """``COOKIE_SECRET``, else the one generated once and kept in SECRETS_DIR."""
        return resolve_token("COOKIE_SECRET", self.COOKIE_SECRET, self.SECRETS_DIR)

    @cached_property
    def allowed_hosts(self) -> list[str]:
        return [h.strip().lower().strip("[]") for h in self.ALLOWED_HOSTS.split(",") if h.strip()]

    @cached_property
    def allowed_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.ALLOWED_ORIGINS.split(",") if o.strip()]

    @property
    def instance_name(self) -> str:
        return self.BACKEND_INSTANCE.strip() or f"{socket.gethostname()}-{self.BACKEND_PORT}"

    @property
    def ingest_url(self) -> str:
        """Where the bridge reaches this instance (``BACKEND_INGEST_URL``, else derived)."""
        if self.BACKEND_INGEST_URL.strip():
            return self.BACKEND_INGEST_URL.strip().rstrip("/")
        host = self.BACKEND_HOST.strip()
        if host in ("", "0.0.0.0", "::", "[::]", "*"):  # every interface: this host's own address
            try:
                host = socket.gethostbyname(socket.gethostname())
            except OSError:
                host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.BACKEND_PORT}"

    @property
    def frontend_dist(self) -> Path:
        path = self.FRONTEND_DIST.expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def max_upload_bytes(self) -> int:
        return int(self.MAX_UPLOAD_MB * 1024 * 1024)

    @model_validator(mode="after")
    def _no_example_secrets(self) -> Settings:
        """In every environment: INTERNAL_TOKEN set to a long random value or generated (kept in
        SECRETS_DIR, read by the bridge too); AIRFLOW_PASSWORD never an example value, or the
        generated one of SECRETS_DIR."""
        self.INTERNAL_TOKEN = resolve_token("INTERNAL_TOKEN", self.INTERNAL_TOKEN, self.SECRETS_DIR)
        if not self.AIRFLOW_PASSWORD.strip():
            self.AIRFLOW_PASSWORD = ensure_secret(self.SECRETS_DIR, "airflow_password")
        elif problem := weak_secret(self.AIRFLOW_PASSWORD):
            raise ValueError(f"AIRFLOW_PASSWORD {problem}: set a long random value")
        return self
