"""Plain HTTP helpers for the tests (stdlib http.client: no client library in between)."""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Credentials every request carries unless ``auth=False`` (or its own Authorization): the test
# session's admin API token (``conftest.backend`` sets it; issue 17: no route is open).
DEFAULT_AUTH: dict[str, str] = {}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return self.json()["error"]["code"]


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
    *,
    auth: bool = True,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {**(DEFAULT_AUTH if auth else {}), **(headers or {})}
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def put_json(port: int, path: str, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(port, "PUT", path, body, {"Content-Type": "application/json", **(headers or {})})


def post_json(port: int, path: str, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(port, "POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(port: int, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> Response:
    body, content_type = multipart(fields, files)
    return request(port, "POST", "/api/videos/upload", body, {"Content-Type": content_type})


def raw_exchange(port: int, head: bytes, timeout: float = 30) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or pauses."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks):
                sock.settimeout(1)
        return b"".join(chunks)
