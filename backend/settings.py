"""Backend settings: one typed class reading the environment (DESIGN.md, Configuration).

Read once at start-up (``backend.app.main``) and passed down; the names every service shares
(DATABASE_URL, REDIS_*, BACKEND_URL, INTERNAL_TOKEN, VIDEO_STORAGE_PATH, MODEL_PATH,
SPEED_LIMIT_KMH) come from ``traffic_processing.settings.CommonSettings``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, model_validator
from traffic_processing import streams
from traffic_processing.settings import CommonSettings

EXAMPLE_SECRETS = {"change-me", "changeme", ""}
REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(CommonSettings):
    ENVIRONMENT: str = "development"  # development | production
    BACKEND_HOST: str = "0.0.0.0"
    BACKEND_PORT: int = 8686
    ALLOWED_ORIGINS: str = "http://localhost:4200,http://127.0.0.1:4200,http://localhost:8686"
    MAX_UPLOAD_MB: float = Field(default=500, gt=0)
    # The built Angular dashboard (``ng build``, project ``traffic-dashboard``), served at ``/``
    # when its index.html exists; a relative path is taken from the repository root.
    FRONTEND_DIST: Path = Path("frontend/dist/traffic-dashboard/browser")

    AIRFLOW_API_URL: str = "http://127.0.0.1:8080"
    AIRFLOW_USERNAME: str = "admin"
    AIRFLOW_PASSWORD: str = "change-me"
    AIRFLOW_DAG_ID: str = "video_streaming_pipeline"
    AIRFLOW_TIMEOUT_S: float = Field(default=10.0, gt=0)
    AIRFLOW_RETRIES: int = Field(default=3, ge=1)
    AIRFLOW_RETRY_BACKOFF_S: float = Field(default=0.5, ge=0)

    # Cameras make the backend connect where it is told: managing them needs this bearer token
    # (empty: camera management is off; make demo generates one). Logins come with roles later.
    ADMIN_TOKEN: str = ""
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

    @cached_property
    def allowed_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.ALLOWED_ORIGINS.split(",") if o.strip()]

    @property
    def frontend_dist(self) -> Path:
        path = self.FRONTEND_DIST.expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def max_upload_bytes(self) -> int:
        return int(self.MAX_UPLOAD_MB * 1024 * 1024)

    @model_validator(mode="after")
    def _no_example_secrets_in_production(self) -> Settings:
        if self.ENVIRONMENT != "development":
            for name in ("INTERNAL_TOKEN", "AIRFLOW_PASSWORD"):
                if getattr(self, name) in EXAMPLE_SECRETS:
                    raise ValueError(f"{name} is still the example value; set it outside development")
            if self.ADMIN_TOKEN and self.ADMIN_TOKEN in EXAMPLE_SECRETS:
                raise ValueError("ADMIN_TOKEN is still the example value; set it (or leave it empty)")
        return self
