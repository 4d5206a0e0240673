"""The bench's statistics without a stack: live latency windows from a synthetic timeline, the
detection figures from frame messages (with and without the optional fields), and the CPU
accounting of process trees from fake ``/proc`` numbers."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from e2e.bench import detection_stats, latency_stats
from e2e.harness import (
    CLK_TCK,
    ProcStat,
    airflow_component,
    cpu_share,
    parse_stat,
    proc_table,
    service_roots,
    tree,
    window_ticks,
)


def timeline(n: int, fps: float, latency) -> list[dict]:  # noqa: ANN001 - t -> seconds
    t0 = 1_000_000.0
    return [
        {"produced_at": t0 + i / fps, "_arrived": t0 + i / fps + latency(i / fps), "frame_number": i}
        for i in range(n)
    ]


def test_latency_windows_of_a_flat_run() -> None:
    stats = latency_stats(timeline(1190, 25.0, lambda t: 0.8))
    assert stats["lat_p50"] == pytest.approx(0.8)
    assert stats["first_p95"] == pytest.approx(0.8)
    assert stats["last_p95"] == pytest.approx(0.8)
    assert stats["growth"] == pytest.approx(0.0)
    assert stats["lat_max"] == pytest.approx(0.8)


def test_latency_growing_through_the_clip() -> None:
    # 47.6 s of stream, latency 0.5 s + 0.1 s per second: the last 10 s run 3.8-4.8 s behind.
    stats = latency_stats(timeline(1190, 25.0, lambda t: 0.5 + 0.1 * t))
    assert stats["first_p95"] == pytest.approx(0.5 + 0.1 * 9.5, abs=0.01)
    assert stats["last_p95"] == pytest.approx(0.5 + 0.1 * 47.1, abs=0.01)
    assert stats["growth"] > 0.5
    assert stats["lat_max"] == pytest.approx(0.5 + 0.1 * 1189 / 25)


def test_latency_windows_use_the_stream_time_not_arrival() -> None:
    # Frames arrive in one burst at the end: the windows still split on produced_at.
    frames = timeline(500, 25.0, lambda t: 20.0 - t)  # all arrive at t0 + 20
    stats = latency_stats(frames)
    assert stats["first_p95"] > 10 > stats["last_p95"]
    assert stats["growth"] < 0


def test_latency_of_nothing() -> None:
    assert math.isnan(latency_stats([])["lat_p95"])


def test_detection_stats_with_the_new_fields() -> None:
    frames = [
        {"frame_number": i, "detected_frames": i // 5 + 1, "dropped_frames": 0 if i < 50 else 10}
        | {"detect_hz": 5.0 if i < 50 else 3.1, "degraded": i >= 50}
        for i in range(100)
    ]
    frames.append({"end_of_stream": True, "detected_frames": 20, "dropped_frames": 10})
    stats = detection_stats(frames, 25.0)
    assert stats["dropped"] == 10
    assert stats["detected_share"] == pytest.approx(20 / 110)
    assert stats["detect_rate_hz"] == pytest.approx(20 * 25.0 / 110)
    assert stats["video_s"] == pytest.approx(110 / 25.0)
    assert stats["degraded_share"] == pytest.approx(0.5)
    assert stats["detect_hz_median"] == pytest.approx((5.0 + 3.1) / 2)


def test_detection_stats_before_the_fields_exist() -> None:
    frames = [{"frame_number": i, "detected_frames": i // 5 + 1, "detect_stride": 5} for i in range(100)]
    stats = detection_stats(frames, 25.0)
    assert stats["dropped"] == 0
    assert stats["degraded_share"] == 0.0
    assert stats["detect_hz_median"] == pytest.approx(5.0)
    assert stats["detected_share"] == pytest.approx(0.2)


def stat_line(pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority ...
    head = f"{pid} (a (weird) name) S {ppid} 1 1 0 -1 4194304 10 0 0 0"
    return f"{head} {utime} {stime} {cutime} {cstime} 20 0 4 0 {1000 + pid} 123456"


def test_parse_stat_with_a_command_name_holding_spaces_and_parentheses() -> None:
    st = parse_stat(42, stat_line(42, 7, 100, 20, 5, 1), "python -m x")
    assert (st.pid, st.ppid, st.ticks, st.child_ticks, st.cmdline) == (42, 7, 120, 6, "python -m x")
    assert st.start == 1042 and st.total == 126


def test_proc_table_reads_a_fake_proc(tmp_path: Path) -> None:
    for pid, ppid, cmd in ((10, 1, b"bash\0-c\0x"), (11, 10, b"python\0-m\0y")):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(stat_line(pid, ppid, pid, 1))
        (d / "cmdline").write_bytes(cmd + b"\0")
    (tmp_path / "self").mkdir()
    table = proc_table(tmp_path)
    assert set(table) == {10, 11}
    assert table[11].cmdline == "python -m y"


def table_of(*rows: tuple) -> dict[int, ProcStat]:
    """(pid, ppid, ticks, child ticks, cmdline[, start]) rows."""
    return {row[0]: ProcStat(*row) for row in rows}


def test_tree_leaves_out_other_processes_and_excluded_subtrees() -> None:
    table = table_of(
        (1, 0, 5, 0, "root"), (2, 1, 10, 0, "a"), (3, 2, 7, 0, "b"), (4, 1, 1, 0, "c"), (9, 0, 3, 0)
    )
    assert set(tree(table, 1)) == {1, 2, 3, 4}
    assert set(tree(table, 1, exclude={2})) == {1, 4}
    assert tree(table, 99) == {}


def test_window_ticks_counts_what_each_process_added() -> None:
    before = table_of((1, 0, 5, 0, "root"), (2, 1, 10, 0, "child"))
    after = table_of((1, 0, 6, 0, "root"), (2, 1, 13, 0, "child"), (4, 1, 4, 0, "born since"))
    assert window_ticks(before, after) == 1 + 3 + 4


def test_window_ticks_a_waited_for_child_that_ended_counts_after_the_first_snapshot_only() -> None:
    # The grandchild (7 ticks before) ended after 3 more, waited for by the child: its 10 ticks
    # arrive in the child's children time.
    before = table_of((1, 0, 5, 0, "root"), (2, 1, 10, 0, "child"), (3, 2, 7, 0, "grandchild"))
    after = table_of((1, 0, 5, 0, "root"), (2, 1, 12, 10, "child"))
    assert window_ticks(before, after) == 2 + 3


def test_window_ticks_a_child_reaped_by_nobody_is_not_subtracted() -> None:
    # PySpark's daemon ignores SIGCHLD: a worker that ends leaves no trace in its time.
    before = table_of((1, 0, 5, 0, "daemon"), (2, 1, 5000, 0, "warm worker"), (3, 1, 100, 0, "worker"))
    after = table_of((1, 0, 6, 0, "daemon"), (3, 1, 104, 0, "worker"))
    assert window_ticks(before, after) == 1 + 4


def test_window_ticks_a_reused_pid_is_a_new_process() -> None:
    before = table_of((1, 0, 5, 0, "root", 100), (2, 1, 50, 0, "old", 200))
    after = table_of((1, 0, 5, 0, "root", 100), (2, 1, 3, 0, "new", 900))
    assert window_ticks(before, after) == 3


def test_airflow_component() -> None:
    venv = "/work/.airflow-venv/bin"
    assert airflow_component(f"{venv}/python {venv}/airflow scheduler") == "scheduler"
    assert airflow_component("airflow dag-processor") == "dag-processor"
    assert airflow_component(f"{venv}/python {venv}/airflow standalone") is None
    assert airflow_component("airflow api-server --port 8080") == "api-server"
    assert airflow_component("airflow api_server -- host:127.0.0.1 port:8080") == "api-server"
    assert airflow_component("python -m backend.app") is None


def test_service_roots_split_airflow_into_components() -> None:
    table = table_of(
        (100, 1, 1, 0, "python -m stack.airflow_service"),
        (101, 100, 1, 0, "airflow standalone"),
        (102, 101, 50, 0, "airflow scheduler"),
        (103, 102, 9, 0, "airflow scheduler -- LocalExecutor"),
        (104, 101, 20, 0, "airflow triggerer"),
        (200, 1, 30, 0, "python -m backend.app"),
        (300, 1, 4, 0, "postgres -D x"),
        (301, 300, 2, 0, "postgres: checkpointer"),
        (900, 1, 99, 0, "airflow scheduler"),  # another stack's
    )
    stack = SimpleNamespace(
        infra=SimpleNamespace(pg=SimpleNamespace(proc=SimpleNamespace(pid=300)), redis=None),
        procs={"airflow": SimpleNamespace(pid=100), "backend": SimpleNamespace(pid=200)},
    )
    roots = service_roots(stack, table)  # type: ignore[arg-type]
    ticks = {
        label: sum(st.total for st in tree(table, pid, ex).values()) for label, (pid, ex) in roots.items()
    }
    assert ticks == {
        "postgres": 6,
        "backend": 30,
        "airflow (standalone)": 2,
        "airflow scheduler": 59,
        "airflow triggerer": 20,
    }


def test_cpu_share_is_percent_of_one_core() -> None:
    a0, b0 = table_of((1, 0, 0, 0)), table_of((5, 0, 10, 0))
    a1, b1 = table_of((1, 0, CLK_TCK * 2, 0)), table_of((5, 0, 10 + CLK_TCK, 0))
    share = cpu_share((0.0, {"a": a0, "b": b0}), (10.0, {"a": a1, "b": b1}))
    assert share["a"] == pytest.approx(20.0)
    assert share["b"] == pytest.approx(10.0)
    assert share["total"] == pytest.approx(30.0)
