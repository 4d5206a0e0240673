"""The built Angular dashboard at ``/`` (same origin as the API and the WebSocket).

The application's default handler, so every path that no route matches comes here:

- ``/api``, ``/ws`` and ``/metrics`` (and what lies below them), and any method but GET/HEAD:
  the JSON 404 of ``NotFoundHandler``;
- with a build (``FRONTEND_DIST``/index.html): an existing file of the build is served as it is,
  anything else gets index.html (the app's routes: ``/videos/3``...; SPA fallback);
- without a build: ``/`` answers a short JSON hint (how to build it, where the API is), other
  paths the JSON 404.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from urllib.parse import unquote

from backend.handlers.base import ApiError, BaseHandler
from backend.services import access
from backend.services.access import PAGE_CSP

RESERVED_PREFIXES = ("/api", "/ws", "/metrics")
# esbuild's output names carry a content hash (main-3GSK4HPL.js): cached for good.
HASHED_NAME = re.compile(r"-[A-Z0-9]{8,}\.[a-z0-9]+$")
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".webmanifest": "application/manifest+json",
}


def _reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


def build_file(root: Path, url_path: str) -> Path | None:
    """The file of the build that ``url_path`` names, None when there is none (or when the path
    leaves the build directory)."""
    relative = unquote(url_path).lstrip("/")
    if not relative or "\x00" in relative:
        return None
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


class FrontendHandler(BaseHandler):
    # The page and its files are public (the login page is one of its routes); the data it shows
    # comes from the API, which is not.
    access = {"GET": "public"}

    async def prepare(self) -> None:
        access.check_host(self.application, self.request)
        path = self.request.path
        if self.request.method not in ("GET", "HEAD") or _reserved(path):
            raise ApiError(404, "not_found", f"no route for {self.request.method} {path}")

    async def get(self) -> None:
        root = self.application.config.frontend_dist
        index = root / "index.html"
        path = self.request.path
        if not index.is_file():
            if path != "/":
                raise ApiError(404, "not_found", f"no route for GET {path} (the dashboard is not built)")
            self.send_json(
                {
                    "message": "The dashboard is not built: run `make demo` (or `npm run build` in "
                    f"frontend/) so that {index} exists. The REST API is under /api.",
                    "api": "/api/openapi.json",
                    "health": "/api/health",
                    "websocket": "/ws/client/stream",
                }
            )
            return
        target = build_file(root, path) or index
        data = await self.application.db.run_file(target.read_bytes)  # never behind a decode
        suffix = target.suffix.lower()
        content_type = TYPES.get(suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or suffix in (".json", ".webmanifest", ".svg"):
            content_type += "; charset=UTF-8"
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Security-Policy", PAGE_CSP)
        if target.resolve() == index.resolve():
            self.set_header("Cache-Control", "no-cache")
        elif HASHED_NAME.search(target.name):
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(data)  # for HEAD, Tornado sends the headers (Content-Length included) only

    head = get
