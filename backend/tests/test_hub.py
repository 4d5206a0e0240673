"""Per-client queue policy: frames dropped (oldest first) for a slow client, analytics never."""

from __future__ import annotations

import asyncio

from backend.services.hub import ClientQueue, Hub, RepeatFilter


def test_stalled_client_drops_frames_keeps_analytics():
    async def scenario():
        release = asyncio.Event()
        sent: list[str] = []
        closed = []

        async def send(text: str) -> None:
            await release.wait()
            sent.append(text)

        client = ClientQueue(send, lambda: closed.append(True), frame_limit=2, analytics_limit=1000)
        await asyncio.sleep(0)
        for i in range(50):
            client.put_frame(f"f{i}")
            client.put_control(f"a{i}")
        await asyncio.sleep(0)
        assert len(client.frames) <= 2
        release.set()
        for _ in range(200):
            await asyncio.sleep(0)
        return sent, client.dropped_frames, closed

    sent, dropped, closed = asyncio.run(scenario())
    assert [t for t in sent if t.startswith("a")] == [f"a{i}" for i in range(50)]
    frames = [t for t in sent if t.startswith("f")]
    assert frames[-1] == "f49"  # the newest frame always gets through
    assert len(frames) <= 3
    assert dropped >= 47
    assert not closed


def test_client_too_far_behind_on_analytics_is_disconnected():
    async def scenario():
        never = asyncio.Event()
        closed = []

        async def send(text: str) -> None:
            await never.wait()

        client = ClientQueue(send, lambda: closed.append(True), frame_limit=2, analytics_limit=10)
        await asyncio.sleep(0)
        for i in range(12):
            client.put_control(f"a{i}")
        return closed, client.closed

    closed, is_closed = asyncio.run(scenario())
    assert closed == [True] and is_closed


def test_hub_routes_by_channel_without_redis():
    async def scenario():
        hub = Hub(subscriptions=None)
        got: dict[str, list[str]] = {"a": [], "b": []}

        def sink(name):
            async def send(text: str) -> None:
                got[name].append(text)

            return send

        a = ClientQueue(sink("a"), lambda: None, frame_limit=4, analytics_limit=100)
        b = ClientQueue(sink("b"), lambda: None, frame_limit=4, analytics_limit=100)
        hub.register(a)
        hub.register(b)
        await hub.subscribe(a, "processed_frame_1")
        await hub.subscribe(b, "analytics_metrics_1")
        assert hub.broadcast_frame(1, "F") == 1
        assert hub.broadcast_analytics(1, "A") == 1
        assert hub.broadcast_frame(2, "X") == 0
        for _ in range(10):
            await asyncio.sleep(0)
        await hub.remove(a)
        return got, hub.status()

    got, status = asyncio.run(scenario())
    assert got == {"a": ["F"], "b": ["A"]}
    assert status["channels"] == {"analytics_metrics_1": 1}
    assert status["total_connections"] == 1


def test_repeat_filter_drops_redeliveries_keeps_new_runs():
    f = RepeatFilter()
    t0 = 1000.0
    assert [f.fresh("processed", 1, n, t0 + n) for n in range(5)] == [True] * 5
    # The bridge restarted and resends frames 2..6: 2..4 are repeats, 5 and 6 are new.
    assert [f.fresh("processed", 1, n, t0 + n) for n in range(2, 7)] == [False, False, False, True, True]
    # The analytics channel and other videos keep their own position.
    assert f.fresh("analytics", 1, 3, t0 + 3) and f.fresh("processed", 2, 0, t0)
    # A new run of video 1 starts at frame 0, produced later: new, and it becomes the position.
    later = t0 + 600
    assert f.fresh("processed", 1, 0, later)
    assert not f.fresh("processed", 1, 0, later)
    assert f.fresh("processed", 1, 1, later + 0.04)
    # Without produced_at only growing frame numbers get through.
    assert f.fresh("processed", 3, 7, None) and not f.fresh("processed", 3, 7, None)
    assert f.repeats == 5


def test_repeat_filter_keys_runs_on_run_id():
    f = RepeatFilter()
    # Run A of video 1, without produced_at (as the fan-out benchmark sends).
    assert [f.fresh("processed", 1, n, None, "run-a") for n in range(5)] == [True] * 5
    # The bridge restarted and resends frames 2..6 of run A: 2..4 are repeats, 5 and 6 are new.
    got = [f.fresh("processed", 1, n, None, "run-a") for n in range(2, 7)]
    assert got == [False, False, False, True, True]
    # A rerun of the same video (run B) starts again at frame 0 and gets through, every frame.
    assert [f.fresh("processed", 1, n, None, "run-b") for n in range(3)] == [True] * 3
    # ... its own resend is dropped, and so is a late resend of run A (a run the channel left).
    assert not f.fresh("processed", 1, 1, None, "run-b")
    assert not f.fresh("processed", 1, 6, None, "run-a") and not f.fresh("processed", 1, 9, None, "run-a")
    assert f.fresh("processed", 1, 3, None, "run-b")
    # run_id wins over produced_at: an older wall clock in a new run is still a new run.
    assert f.fresh("processed", 1, 0, 5.0, "run-c") and f.fresh("processed", 1, 1, 4.0, "run-c")
    # Channels keep their own run: the analytics channel of video 1 is still at nothing.
    assert f.fresh("analytics", 1, 0, None, "run-a")
    # Id-less messages after a run with ids: the produced_at fallback.
    assert not f.fresh("processed", 1, 1, None) and f.fresh("processed", 1, 2, None)
    assert f.fresh("processed", 1, 0, 1e10)  # produced later than everything: a new run
    assert f.repeats == 7
