"""WebSocket helpers for the tests (tornado's client, plus a raw client that never reads)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from backend.tests import client
from backend.tests.conftest import ORIGIN, TOKEN


async def connect(
    url: str, *, origin: str | None = ORIGIN, token: str | None = None, auth: bool = True
) -> WebSocketClientConnection:
    """``token``: a bearer token; else the session's default credentials (``auth=False``: none)."""
    headers = dict(client.DEFAULT_AUTH) if auth else {}
    if origin:
        headers["Origin"] = origin
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await websocket_connect(
        HTTPRequest(url, headers=headers, connect_timeout=10), max_message_size=64 * 1024 * 1024
    )


async def connect_status(url: str, **kwargs: Any) -> int:
    """101 when the upgrade is accepted, else the refusal's HTTP status."""
    try:
        conn = await connect(url, **kwargs)
    except HTTPClientError as exc:
        return exc.code
    conn.close()
    return 101


async def recv(conn: WebSocketClientConnection, timeout: float = 10) -> dict:
    message = await asyncio.wait_for(conn.read_message(), timeout)
    assert message is not None, "connection closed"
    return json.loads(message)


async def subscribe(conn: WebSocketClientConnection, channel: str) -> dict:
    await conn.write_message(json.dumps({"action": "subscribe", "channel": channel}))
    return await recv(conn)


async def ingest(port: int, kind: str) -> WebSocketClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/ws/backend/{kind}", origin=None, token=TOKEN)


class NeverReadingClient:
    """Completes the handshake, subscribes, then never reads a byte (tiny receive buffer)."""

    def __init__(self, port: int, channels: list[str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws/client/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {ORIGIN}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in client.DEFAULT_AUTH.items())
                + "\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        for channel in channels:
            self.send_text(json.dumps({"action": "subscribe", "channel": channel}))

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        frame = bytes([0x81, 0x80 | len(payload)]) + mask
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(frame)

    def close(self) -> None:
        self.sock.close()


__all__ = ["NeverReadingClient", "connect", "connect_status", "ingest", "recv", "struct", "subscribe"]
