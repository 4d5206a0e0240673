"""The pieces of ``make demo``'s supervision that need no running stack: the choice of ports
(TIME_WAIT is free, a port another program listens on moves to the next free one and says so),
supervisord's configuration and stop order, the ``[stack]`` lines made of supervisord's log, and
what the console keeps of each service's log."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pytest

from backend.embedded import free_port, pick_port, port_is_free
from stack.banner import banner
from stack.console import Console, Tail
from stack.infra import SECRETS, Infra, stack_secrets
from stack.pidfiles import leftover_processes
from stack.processes import read_procfile
from stack.supervise import Events, stop_order, write_config


def _listener(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _two_free_ports() -> int:
    """A port p with p + 1 free too."""
    for _ in range(50):
        p = free_port()
        if p < 65535 and port_is_free(p + 1):
            return p
    pytest.skip("no two consecutive free ports")


def test_a_port_in_time_wait_is_kept():
    """The server closes first (as a restarted backend does): its port is in TIME_WAIT. A plain
    bind fails there (the old pick_port then moved the service to a random port); a bind with
    SO_REUSEADDR, as every server of the stack binds, succeeds: the port is kept."""
    server = _listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # active close on the server side: TIME_WAIT on 127.0.0.1:port
    time.sleep(0.1)
    client.close()
    server.close()
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    finally:
        plain.close()
    assert port_is_free(port)
    assert pick_port(port) == port


def test_a_port_taken_by_another_program_moves_to_the_next_free_one():
    port = _two_free_ports()
    holder = _listener(port)
    try:
        assert not port_is_free(port)
        assert not port_is_free(port, "0.0.0.0")
        assert pick_port(port) == port + 1
        assert pick_port(port, exclude={port + 1}) not in (port, port + 1)
    finally:
        holder.close()
    assert pick_port(port) == port


def test_infra_says_loudly_which_port_moved(tmp_path):
    port = _two_free_ports()
    holder = _listener(port)
    try:
        infra = Infra(tmp_path, backend_port=port, pg_port=0, redis_port=0, airflow_port=0, spark_ui_port=0)
        infra._pick_ports()
    finally:
        holder.close()
    assert infra.backend_port == port + 1
    # (other default ports may be taken on this machine too: only the backend's move is ours)
    assert f"port {port} is taken by another program; backend on {port + 1}" in infra.moved
    ports = [infra.pg_port, infra.redis_port, infra.backend_port, infra.airflow_port, infra.spark_ui_port]
    assert len(set(ports)) == len(ports)
    infra.env = {"BACKEND_PORT": str(infra.backend_port)}
    text = infra.write_env(tmp_path / "stack.env").read_text()
    assert f"# WARNING: port {port} is taken by another program; backend on {port + 1}" in text
    assert "STACK_PORT_WARNINGS=" in text


def test_supervisord_config_and_stop_order(tmp_path):
    commands = read_procfile()
    assert set(commands) == {"backend", "redis-consumer", "spark", "airflow", "rtsp-camera"}
    conf = write_config(tmp_path, commands, Path("/repo"))
    text = conf.read_text()
    for name in commands:
        assert f"[program:{name}]" in text
        assert f"stdout_logfile={tmp_path / 'logs' / name}.log" in text
    assert text.count("autorestart=true") == 5
    # the demo camera last: the producers stop before their camera goes away
    assert stop_order(list(commands)) == [
        ["airflow", "spark"],
        ["redis-consumer"],
        ["backend"],
        ["rtsp-camera"],
    ]
    assert stop_order(["backend", "extra"]) == [["extra"], ["backend"]]


def test_scaled_out_services_stop_after_what_uses_them(tmp_path):
    """make demo CLUSTER=2 BACKENDS=2: the workers after the application that runs on them, the
    master after its workers, the numbered backends with the first; a supervision by kind."""
    from stack.processes import stack_commands
    from stack.supervise import SUPERVISION, supervision

    infra = Infra(tmp_path, spark_workers=2, backends=1)
    commands = stack_commands(infra)
    assert commands["spark-master"].endswith("-m spark.streaming.standalone master")
    assert 'SPARK_WORKER_DIR="$SPARK_WORKER_DIR_BASE/worker-2"' in commands["spark-worker-2"]
    names = [*commands, "backend-2"]
    steps = stop_order(names)
    where = {name: i for i, step in enumerate(steps) for name in step}
    assert where["spark"] < where["spark-worker-1"] == where["spark-worker-2"] < where["spark-master"]
    assert where["redis-consumer"] < where["backend"] == where["backend-2"]
    assert supervision("backend-2") == SUPERVISION["backend"]
    assert supervision("backendx") != SUPERVISION["backend"]
    assert stack_commands(Infra(tmp_path)).keys() == read_procfile().keys()  # not scaled: the Procfile


def test_restart_lines_from_supervisords_log():
    ev = Events("/data/logs")
    say = [
        ev.translate(line)
        for line in (
            "2026-01-01 10:00:00,000 INFO spawned: 'redis-consumer' with pid 100",
            "2026-01-01 10:00:03,000 INFO success: redis-consumer entered RUNNING state, process has",
            "2026-01-01 10:00:30,000 WARN exited: redis-consumer (terminated by SIGKILL; not expected)",
            "2026-01-01 10:00:30,100 INFO spawned: 'redis-consumer' with pid 200",
            "2026-01-01 10:00:30,200 WARN exited: redis-consumer (exit status 1; not expected)",
            "2026-01-01 10:00:31,300 INFO spawned: 'redis-consumer' with pid 300",
            "2026-01-01 10:00:31,000 CRIT Server 'unix_http_server' running without any HTTP authentication",
        )
    ]
    assert say == [
        "[stack] redis-consumer started (pid 100)",
        None,
        "[stack] redis-consumer exited (killed by SIGKILL, rc=-9), restarting now (restart 1); "
        "its log: /data/logs/redis-consumer.log",
        "[stack] redis-consumer restarted (pid 200, restart 1)",
        "[stack] redis-consumer exited (rc=1), failed at start, restarting in 1 s (restart 2); "
        "its log: /data/logs/redis-consumer.log",
        "[stack] redis-consumer restarted (pid 300, restart 2)",
        None,
    ]
    assert ev.pids["redis-consumer"] == [100, 200, 300]
    ev.stopping = True
    line = "2026-01-01 10:01:00,000 WARN exited: spark (terminated by SIGKILL; not expected)"
    assert ev.translate(line) == "[stack] spark exited (killed by SIGKILL, rc=-9)"


def test_console_keeps_the_useful_lines(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    out = io.StringIO()
    console = Console(logs, ["airflow", "spark", "backend"], lambda _line: None, out=out)
    (logs / "airflow.log").write_text(
        "Airflow standalone on http://localhost:8080 (user admin)\n"
        "dag-processor | 2026-01-01T10:00:00Z [info     ] Refreshing bundle dags-folder [x] loc=m.py:890\n"
        "dag-processor | DAG File Processing Stats\n"
        "scheduler  | 2026-01-01T10:00:00Z [info     ] Worker starting up pid=1 [x]\n"
        "standalone | Airflow is ready\n"
        "scheduler  | 2026-01-01T10:00:01Z [error    ] Something failed [x]\n"
    )
    (logs / "spark.log").write_text(
        "26/11/28 10:31:43 WARN Utils: Your hostname, vm, resolves to a loopback address\n"
        "2026-01-01 10:00:00,000 INFO traffic_streaming.app: [SPARK-APP] ready 30.0 s\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "    boom()\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "RuntimeError: boom\n"
        "26/11/28 10:31:43 ERROR Executor: task failed\n"
    )
    (logs / "backend.log").write_text(
        "2026-01-01 10:00:00,000 INFO tornado.access 200 GET /api/health (127.0.0.1) 1.2ms\n"
        "2026-01-01 10:00:00,000 WARNING tornado.access 500 GET /api/videos (127.0.0.1) 1.2ms\n"
        "2026-01-01 10:00:00,000 INFO backend backend listening on 0.0.0.0:8686\n"
    )
    console.tails = {name: Tail(logs / f"{name}.log", from_end=False) for name in console.names}
    console.poll()
    shown = out.getvalue().splitlines()
    assert shown == [
        "airflow | Airflow standalone on http://localhost:8080 (user admin)",
        "airflow | standalone | Airflow is ready",
        "airflow | scheduler  | 2026-01-01T10:00:01Z [error    ] Something failed [x]",
        "spark   | 2026-01-01 10:00:00,000 INFO traffic_streaming.app: [SPARK-APP] ready 30.0 s",
        f"spark   | (a stack trace: see {logs}/spark.log)",
        "spark   | 26/11/28 10:31:43 ERROR Executor: task failed",
        "backend | 2026-01-01 10:00:00,000 WARNING tornado.access 500 GET /api/videos (127.0.0.1) 1.2ms",
        "backend | 2026-01-01 10:00:00,000 INFO backend backend listening on 0.0.0.0:8686",
    ]


def test_scaled_out_services_keep_only_their_useful_lines():
    """The cluster's daemons and the proxy: that they are up, and what is serious; a numbered
    instance (backend-2) filtered as its kind."""
    from stack.console import console_filter

    worker = console_filter("spark-worker-2")
    assert worker("26/12/07 08:04:00 INFO Worker: Successfully registered with master spark://127.0.0.1:7077")
    assert not worker("26/12/07 08:04:00 INFO ExecutorRunner: Launch command: java ...")
    assert worker("26/12/07 08:04:00 ERROR Worker: Failed to launch executor")
    assert console_filter("spark-master")("26/12/07 08:03:57 INFO Master: Starting Spark master at spark://x")
    proxy = console_filter("proxy")
    assert proxy("[proxy] nginx on 127.0.0.1:8686 -> backends on 127.0.0.1:1,2")
    assert not proxy("2026/12/07 08:03:49 [error] 1#1: *1 connect() failed (111: Connection refused)")
    assert proxy("2026/12/07 08:03:49 [emerg] 1#1: bind() to 127.0.0.1:8686 failed (98: Address in use)")
    assert not console_filter("backend-2")("INFO tornado.access 200 GET /api/health (127.0.0.1) 1.2ms")
    assert console_filter("something-new")("any line")


def test_tail_follows_a_rotated_log(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("old\n")
    tail = Tail(path)
    with open(path, "a") as f:
        f.write("one\ntw")
    assert tail.lines() == ["one"]
    with open(path, "a") as f:
        f.write("o\n")
    assert tail.lines() == ["two"]
    path.rename(tmp_path / "x.log.1")
    path.write_text("new\n")
    assert tail.lines() == ["new"]


def test_no_process_of_an_unknown_instance():
    assert leftover_processes("no-such-instance") == []


def test_a_previous_run_is_refused_while_up_and_cleared_once_dead(tmp_path):
    import json
    import os
    import subprocess
    import sys
    import uuid

    from stack.pidfiles import clear_previous_run

    instance = uuid.uuid4().hex
    env = {**os.environ, "TRAFFIC_STACK_INSTANCE": instance}
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]

    def pidfile(pid: int, sessions: list[int]) -> None:
        (tmp_path / "stack.pid").write_text(
            json.dumps({"pid": pid, "instance": instance, "sessions": sessions})
        )

    # A stack.run still up on this data dir: refused, nothing touched.
    runner = subprocess.Popen([*sleep, "stack.run"], env=env)
    try:
        deadline = time.monotonic() + 10  # until it has exec'd (its command line is its own)
        while b"stack.run" not in Path(f"/proc/{runner.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pidfile(runner.pid, [])
        problem = clear_previous_run(tmp_path)
        assert problem and f"pid {runner.pid}" in problem
        assert runner.poll() is None
    finally:
        runner.kill()
        runner.wait()
    # Its stack.run gone, two of its processes left: one with the run's mark in its environment,
    # one without (Redis, PostgreSQL and Airflow overwrite theirs) but in one of the run's
    # sessions: both ended, and the new run goes on.
    marked = subprocess.Popen(sleep, env=env)
    server = subprocess.Popen([*sleep, "redis-server"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10  # until it has exec'd (its command line is its own)
        while b"redis-server" not in Path(f"/proc/{server.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pidfile(runner.pid, [server.pid])
        assert sorted(leftover_processes(instance, [server.pid])) == sorted([marked.pid, server.pid])
        assert clear_previous_run(tmp_path) is None
        assert marked.wait(30) is not None and server.wait(30) is not None
        assert leftover_processes(instance, [server.pid]) == []
    finally:
        for proc in (marked, server):
            proc.kill()
            proc.wait()


def test_a_reused_session_number_is_left_alone():
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert leftover_processes("no-such-instance", [other.pid]) == []
    finally:
        other.kill()
        other.wait()


def test_the_stack_generates_its_secrets_once_and_keeps_them(tmp_path, monkeypatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "secrets"
    first = stack_secrets(folder)
    assert set(first) == {*SECRETS, "POSTGRES_PASSWORD"}
    assert all(len(value) >= 32 for value in first.values())
    assert len(set(first.values())) == len(first)
    assert stack_secrets(folder) == first  # the next start: the same ones
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())
    given = "r-" + "x1" * 20
    monkeypatch.setenv("REDIS_PASSWORD", given)  # the environment's value wins
    assert stack_secrets(folder)["REDIS_PASSWORD"] == given
    for name, weak in (
        ("AIRFLOW_PASSWORD", "admin"),
        ("INTERNAL_TOKEN", "change-me"),
        ("INTERNAL_TOKEN", "short"),
    ):
        monkeypatch.setenv(name, weak)
        with pytest.raises(ValueError, match=name):
            stack_secrets(folder)
        monkeypatch.delenv(name)


def test_stack_env_is_private_from_its_creation(tmp_path):
    path = tmp_path / "stack.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    infra = Infra(tmp_path)
    infra.env = {"REDIS_PASSWORD": "p w"}
    infra.write_env(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "REDIS_PASSWORD='p w'" in path.read_text()


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_banner_warns_when_the_backend_listens_beyond_loopback(tmp_path, host, warned):
    infra = Infra(tmp_path, backend_host=host)
    infra.env = {
        "BACKEND_URL": "http://127.0.0.1:8686",
        "AIRFLOW_API_URL": "http://127.0.0.1:8080",
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": "generated-" + "x" * 30,
    }
    text = banner(infra, None, ".local", time.monotonic())
    assert ("anyone on the network can reach its login page; set ALLOWED_HOSTS" in text) is warned
    assert "password generated-" in text  # Airflow's generated password, shown


def test_every_port_is_chosen_on_loopback(tmp_path, monkeypatch):
    """The backend on 127.0.0.1 unless --host asks, whatever BACKEND_HOST the shell has."""
    monkeypatch.setenv("BACKEND_HOST", "0.0.0.0")
    import backend.embedded

    hosts = []
    real = backend.embedded.pick_port

    def spy(preferred, exclude=(), span=20, host="127.0.0.1"):  # noqa: ANN001, ANN202
        hosts.append(host)
        return real(0, exclude, span, host)

    monkeypatch.setattr(backend.embedded, "pick_port", spy)
    Infra(tmp_path)._pick_ports()
    assert hosts and set(hosts) == {"127.0.0.1"}
