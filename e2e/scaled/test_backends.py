"""Two backend instances behind one address (issue 18), end to end on the scaled stack: the
proxy (stack/proxy.py, nginx) in front of ``backend`` and ``backend-2``, the bridge delivering to
each instance that has viewers at its own address (the Redis registry).

One live stream of the ground-truth clip, uploaded and started through the proxy. Viewers
connected straight to each instance, and viewers through the proxy (nginx spreads them over
both), all get frames and analytics. Mid-stream the instance holding proxy viewers is killed
(kill -9): its proxy viewers reconnect through the proxy to the other one within seconds and the
analytics they get from there on have no gap (the bridge holds the stream until the dead
instance's registration lapses, then goes on from where it was); the stored results are right.
"""

from __future__ import annotations

import time

import pytest

from e2e.harness import Api, Viewer, wait_dag_run
from stack.rest_client import wait_http

pytestmark = pytest.mark.slow
RECONNECT_BOUND_S = 10.0
PROXY_VIEWERS = 4
# the moved viewers may miss the few analytics messages in flight to the killed instance
MAX_MISSED_AT_KILL = 6


def instance_names(stack) -> dict[int, str]:
    """port -> supervisor name of each backend instance."""
    return {
        port: ("backend" if i == 0 else f"backend-{i + 1}")
        for i, port in enumerate(stack.infra.backend_ports)
    }


def connections(port: int, token: str) -> int:
    """The WebSocket connections the instance at ``port`` holds (asked of it, not the proxy)."""
    api = Api(f"http://127.0.0.1:{port}", token)
    return api.expect("GET", "/api/websocket/status", timeout=10)["total_connections"]


def updates(viewer: Viewer, after: float = 0.0) -> list[int]:
    """Frame numbers of the analytics updates that arrived after ``after`` (wall clock)."""
    return [
        a["frame_number"] for a in viewer.analytics if not a.get("end_of_stream") and a["_arrived"] > after
    ]


def check_backends(stack, truth) -> dict:
    clip, calib, data = truth
    infra, token = stack.infra, stack.infra.env["TRAFFIC_API_TOKEN"]
    assert infra.backends == 2 and len(infra.backend_ports) == 2
    api = Api.of(stack)  # through the proxy: upload (streamed), calibration, start
    video_id = api.upload(clip, "two backends")["id"]
    api.calibrate(video_id, calib)

    names = instance_names(stack)
    direct = {
        port: Viewer(f"ws://127.0.0.1:{port}/ws/client/stream", video_id, token).start() for port in names
    }
    # through the proxy, as the dashboard's page served there: its own origin (the proxy passes
    # the Host with its port, which the backend's own-origin check compares)
    public = f"127.0.0.1:{infra.backend_port}"
    proxied = [
        Viewer(
            f"ws://{public}/ws/client/stream", video_id, token, origin=f"http://{public}", reconnect=True
        ).start()
        for _ in range(PROXY_VIEWERS)
    ]
    # where nginx put the proxy viewers: the instance with more than its direct viewer
    held = {port: connections(port, token) - 1 for port in names}
    assert sum(held.values()) == PROXY_VIEWERS and all(held.values()), held  # round robin: both
    victim_port = max(held, key=lambda p: (held[p], p))
    survivor_port = next(p for p in names if p != victim_port)
    victim, survivor = direct[victim_port], direct[survivor_port]

    started = time.monotonic()
    status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": True})
    assert status == 201, run  # the contract: 201 with the Airflow run
    deadline = time.monotonic() + 120
    while len(updates(survivor)) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(updates(survivor)) >= 60, (survivor.errors, victim.errors)
    # both instances' viewers get the same stream, frames too
    assert len(victim.frames) > 0 and len(updates(victim)) > 0, victim.errors
    killed_at = time.time()
    stack.kill(names[victim_port])  # kill -9 mid-stream
    print(f"[backends] killed {names[victim_port]} at analytics frame {updates(survivor)[-1]}")

    for viewer in [survivor, *proxied]:
        assert viewer.wait(240), f"no end of stream: {len(viewer.frames)} frames, {viewer.errors}"
    victim.stop()
    elapsed = time.monotonic() - started
    run_id = run.get("dag_run_id") or run["dag_run"]["dag_run_id"]
    assert wait_dag_run(stack, run_id, 180) == "success"

    # The survivor's direct viewer: the whole stream, in order, once
    reference = updates(survivor)
    assert reference == sorted(reference) and len(reference) == len(set(reference))
    assert survivor.frames[-1]["end_of_stream"] and survivor.analytics[-1].get("end_of_stream")
    assert not survivor.errors, survivor.errors
    # The victim's direct viewer got the same stream until the kill
    before_kill = updates(victim)
    assert before_kill and before_kill == [n for n in reference if n <= before_kill[-1]]

    moved = [v for v in proxied if v.disconnects]
    stayed = [v for v in proxied if not v.disconnects]
    assert moved and stayed, "the proxy viewers were on both instances"
    reconnect_s = [s for v in moved for s in v.reconnects]
    assert len(reconnect_s) == len(moved), [v.errors for v in moved]
    print(
        f"[backends] {len(moved)} viewers reconnected through the proxy in "
        + ", ".join(f"{s:.2f} s" for s in reconnect_s)
    )
    assert max(reconnect_s) < RECONNECT_BOUND_S
    for v in stayed:
        assert updates(v) == reference, "a viewer of the surviving instance missed analytics"
        assert v.frames[-1]["end_of_stream"]
    for v in moved:
        lost = v.disconnects[0]
        assert lost >= killed_at - 1
        first_after = updates(v, after=lost)
        assert first_after, "nothing after the reconnect"
        # from its first update after the reconnect to the end: exactly the reference, no gap
        assert first_after == [n for n in reference if n >= first_after[0]], "a gap after the reconnect"
        got = set(updates(v))
        assert updates(v) == sorted(got), "analytics out of order or twice"
        missed = [n for n in reference if n not in got]
        # what it missed: only the few updates in flight to the killed instance
        assert all(updates(v, 0)[0] <= n < first_after[0] for n in missed), missed
        print(f"[backends] a moved viewer missed analytics of frames {missed} (in flight at the kill)")
        assert len(missed) <= MAX_MISSED_AT_KILL, missed
        assert v.frames[-1]["end_of_stream"]
    # the results are right (REST, through the proxy)
    status, analytics = api.json("GET", f"/api/videos/{video_id}/analytics")
    assert status == 200, analytics
    assert analytics["total_vehicles_count"] == len(data["vehicles"]), analytics
    return {"reconnect_s": reconnect_s, "stream_s": elapsed, "victim": names[victim_port]}


def test_two_backends_behind_one_address(scaled_stack, truth):
    stack = scaled_stack
    try:
        seen = check_backends(stack, truth)
        print(f"[backends] {seen}")
    finally:  # the next tests of the scaled stack get both instances again
        for port, name in instance_names(stack).items():
            if stack.procs[name].poll() is not None:
                wait_http(f"http://127.0.0.1:{port}/api/health", 60, stack.start(name))
