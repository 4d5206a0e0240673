"""Fan-out: 100 viewers of one video plus one client that never reads.

The 100 must get every analytics message and frames at the ingest rate; the stalled client
only loses its own frames.
"""

from __future__ import annotations

import asyncio

from backend.tests.client import request, upload
from backend.tests.conftest import ORIGIN, TOKEN
from backend.tests.ws import NeverReadingClient
from benchmarks.fanout import run_fanout

FPS = 25.0
FRAMES = 75  # 3 s of video
FRAME_BYTES = 30 * 1024  # 40 KB once base64-encoded


def test_hundred_clients_and_a_stalled_one(api, sample_video):
    video_id = upload(api.port, {"name": "fanout"}, {"video": ("f.mp4", sample_video.read_bytes())}).json()[
        "id"
    ]
    stalled = NeverReadingClient(api.port, [f"processed_frame_{video_id}", f"analytics_metrics_{video_id}"])
    try:
        result = asyncio.run(
            run_fanout(
                api.ws_url,
                token=TOKEN,
                origin=ORIGIN,
                video_id=video_id,
                clients=100,
                frames=FRAMES,
                frame_bytes=FRAME_BYTES,
                fps=FPS,
                timeout_s=60,
                client_headers=api.accounts["viewer"].auth,
            )
        )
        status = request(api.port, "GET", "/api/websocket/status").json()
        queues = api.loop.call(lambda: [(len(c.frames), c.frames.maxlen) for c in api.app.hub.clients])
    finally:
        stalled.close()
    assert result.min_analytics == FRAMES  # every analytics message, to every client
    assert result.min_frames >= 0.9 * FRAMES, [c.frames for c in result.per_client]
    rates = sorted(c.frames_per_s() for c in result.per_client)
    assert rates[0] >= 0.8 * FPS, rates[:5]
    assert result.elapsed_s < FRAMES / FPS + 5  # nobody held the others back
    # The stalled client is still connected, holding at most its bounded frame queue.
    assert status["total_connections"] == 1
    assert all(queued <= limit for queued, limit in queues)
