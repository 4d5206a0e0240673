"""``GET /api/websocket/status`` and ``/metrics`` report the hub's counters from one source: after
frames are dropped for a slow client (and after that client left), both say the same number."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

from prometheus_client import CollectorRegistry, generate_latest

from backend.services import metrics
from backend.services.hub import ClientQueue, Hub
from backend.tests.client import request, upload
from backend.tests.conftest import wait_until
from backend.tests.test_websocket import frame_message
from backend.tests.ws import ingest


def metric(body: bytes, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
    assert match, name
    return float(match.group(1))


def both(api) -> tuple[int, float, int, float]:
    """(status dropped_frames, metrics backend_ws_frames_dropped_total, status repeats_dropped,
    metrics backend_ingest_repeats_total), read back to back."""
    status = request(api.port, "GET", "/api/websocket/status").json()
    body = request(api.port, "GET", "/metrics").body
    return (
        status["dropped_frames"],
        metric(body, "backend_ws_frames_dropped_total"),
        status["repeats_dropped"],
        metric(body, "backend_ingest_repeats_total"),
    )


def test_status_and_metrics_count_dropped_frames_alike(api, sample_video):
    vid = upload(api.port, {"name": "counters"}, {"video": ("c.mp4", sample_video.read_bytes())}).json()["id"]
    hub = api.app.hub
    limit, n = 3, 40
    dropped0, metric0, repeats0, metric_repeats0 = both(api)
    assert dropped0 == metric0 and repeats0 == metric_repeats0

    async def stalled_client() -> ClientQueue:
        """A subscriber whose socket never takes anything: its frame queue fills."""
        never = asyncio.Event()

        async def send(text) -> None:
            await never.wait()

        client = ClientQueue(send, lambda: None, frame_limit=limit, analytics_limit=1000)
        hub.register(client)
        await hub.subscribe(client, f"processed_frame_{vid}")
        return client

    client = api.loop.call(stalled_client)

    run = uuid.uuid4().hex

    def frame(i: int, produced_at: float) -> str:
        message = json.loads(frame_message(vid, i, produced_at=produced_at))
        message["data"]["run_id"] = run
        return json.dumps(message)

    async def push() -> None:
        conn = await ingest(api.port, "processed")
        for i in range(n):
            await conn.write_message(frame(i, 1.0 + i))
        await conn.write_message(frame(0, 1.0))  # a repeat (the bridge redelivering frame 0)
        conn.close()

    asyncio.run(push())
    assert wait_until(lambda: both(api)[2] == repeats0 + 1)  # the last message was handled
    dropped = client.dropped_frames
    assert n - 1 - limit <= dropped <= n - limit  # the writer took at most one frame off the queue
    status_dropped, metric_dropped, status_repeats, metric_repeats = both(api)
    assert status_dropped == metric_dropped == dropped0 + dropped
    assert status_repeats == metric_repeats == repeats0 + 1

    # The slow client leaves: the totals stay (they count since start, not per connected client).
    api.loop.call(lambda: hub.remove(client))
    assert client not in hub.clients
    assert both(api) == (dropped0 + dropped, dropped0 + dropped, repeats0 + 1, repeats0 + 1)


def test_hub_counters_are_what_the_collector_exposes():
    """Without the application: a hub's status and the Prometheus collector bound to it agree,
    exactly, before and after the dropping client is removed."""

    async def scenario() -> list[tuple[int, float]]:
        hub = Hub(None)
        registry = CollectorRegistry()
        collector = metrics.HubCollector()
        collector.bind(hub)
        registry.register(collector)

        def read() -> tuple[int, float]:
            return hub.status()["dropped_frames"], metric(
                generate_latest(registry), "backend_ws_frames_dropped_total"
            )

        never = asyncio.Event()

        async def send(text) -> None:
            await never.wait()

        client = ClientQueue(send, lambda: None, frame_limit=2, analytics_limit=10)
        hub.register(client)
        await hub.subscribe(client, "processed_frame_5")
        seen = [read()]
        hub.broadcast_frame(5, "f0")
        await asyncio.sleep(0)  # the writer takes f0 and blocks in send
        for i in range(1, 11):
            hub.broadcast_frame(5, f"f{i}")
        seen.append(read())
        await hub.remove(client)
        seen.append(read())
        return seen

    assert asyncio.run(scenario()) == [(0, 0.0), (8, 8.0), (8, 8.0)]  # 10 queued into 2 places
