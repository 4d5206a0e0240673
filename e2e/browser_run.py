"""Running a spec of the browser suite (``e2e/browser/*.spec.mjs``, playwright-core driving Debian's
Chromium) from a test, shared by ``e2e/test_dashboard_browser.py`` and ``e2e/test_camera_browser.py``.

A spec takes a ``CONFIG.json`` (its own keys, plus ``artifacts``: the folder for its screenshots,
and ``result``: where it writes its result JSON) and writes a result of steps (``name``, ``ok``,
``ms``, ``screenshots``, ``error``), observations (``seen``), axe-core violations per page
(``axe``) and the page's uncaught errors (``page_errors``); it exits 0 when every step ran (see
``e2e/browser/lib.mjs`` ``createRun``). The build both need is the ``dashboard_built`` fixture
(``e2e/conftest.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from e2e.harness import REPO

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
BROWSER_DIR = REPO / "e2e" / "browser"
NODE_TIMEOUT_S = 600


def build_dashboard() -> None:
    """The production build the backend serves, and the suite's Node packages (both from their
    lock files, rebuilt only when stale: the Makefile's own rules)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    assert shutil.which("node"), "node is missing"
    subprocess.run(
        ["make", "--no-print-directory", "frontend", "browser-deps"], cwd=REPO, check=True, timeout=1200
    )
    assert (REPO / "frontend/dist/traffic-dashboard/browser/index.html").exists()


def make_account(api, role: str) -> dict[str, str]:  # noqa: ANN001  (a stack.rest_client.Api)
    """A new account of ``role`` with a generated password, made through ``POST /api/users``."""
    name, password = f"{role}-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    status, body = api.json("POST", "/api/users", {"username": name, "password": password, "role": role})
    assert status == 201, body
    return {"username": name, "password": password}


def audit_entries(api, username: str) -> list[dict]:  # noqa: ANN001
    """The audit log's entries of ``username`` (newest first), read by the admin token."""
    status, body = api.call("GET", "/api/audit?limit=1000")
    assert status == 200, body
    return [e for e in body["entries"] if e["username"] == username]


@dataclass
class SpecRun:
    """A spec's run: its exit code, the result it wrote, the seconds it took."""

    returncode: int
    result: dict
    seconds: float

    def summary(
        self, title: str, *, name_width: int = 16, seen_chars: int = 4000, notes: Iterable[str] = ()
    ) -> str:
        """The steps, what was seen (cut at ``seen_chars``), ``notes``, the axe-core violations,
        the page errors and failed requests, and the exit."""
        result = self.result
        lines = [f"{title} in Chromium: {result.get('seconds', 0):.0f} s in the browser"]
        for s in result["steps"]:
            mark = "ok" if s["ok"] else "FAILED"
            shots = ", ".join(s["screenshots"])
            lines.append(f"  {s['name']:<{name_width}} {mark:<6} {s['ms'] / 1000:6.1f} s  {shots}")
            if not s["ok"]:
                lines.append("    " + s.get("error", "").replace("\n", "\n    "))
        lines.append("  seen: " + json.dumps(result["seen"], default=str)[:seen_chars])
        lines.extend(notes)
        for page, violations in result["axe"].items():
            lines.append(f"  axe {page}: " + ", ".join(f"{v['id']} ({v['impact']})" for v in violations))
        if result["page_errors"]:
            lines.append(f"  page errors: {result['page_errors']}")
        if result.get("failed_requests"):
            lines.append(f"  failed requests: {result['failed_requests']}")
        lines.append(f"  (node exit {self.returncode}, {self.seconds:.0f} s)")
        return "\n".join(lines)

    def assert_steps_ok(self, stack, side_errors: list[str] | None = None) -> None:
        """Every step ran and node exited 0 (and the test's side, if any, had no error); else the
        first failed step's error, with the backend's log."""
        failed = [s for s in self.result["steps"] if not s["ok"]]
        side = f"\n  test side: {side_errors}" if side_errors is not None else ""
        assert not failed and self.returncode == 0 and not side_errors, (
            f"step {failed[0]['name'] if failed else '?'} failed: "
            f"{failed[0].get('error') if failed else self.result}"
            f"{side}\n---- backend ----\n{stack.log_tail('backend')}"
        )

    def assert_page_clean(self, pages: set[str], artifacts: Path, shots: Iterable[str]) -> None:
        """axe-core ran on ``pages`` and found no serious or critical violation, no uncaught
        exception in the page, and the ``shots`` are real screenshots."""
        result = self.result
        assert set(result["axe"]) == pages
        bad = {
            page: [
                (v["id"], v["impact"], v["nodes"][:2])
                for v in found
                if v["impact"] in ("serious", "critical")
            ]
            for page, found in result["axe"].items()
        }
        assert not any(bad.values()), bad
        assert not result["page_errors"], result["page_errors"]
        for shot in shots:
            assert (artifacts / f"{shot}.png").stat().st_size > 10_000, shot


def run_spec(
    spec: str,
    config: dict,
    work: Path,
    artifacts: Path,
    *,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    cleanup: Callable[[], None] | None = None,
    timeout_s: float = NODE_TIMEOUT_S,
) -> SpecRun:
    """Runs ``node e2e/browser/<spec> CONFIG.json`` (``config`` plus ``artifacts``, emptied first,
    and ``result`` in ``work``), echoing its output and handing each line to ``on_line``; killed
    after ``timeout_s``. ``cleanup`` runs once node is done, whatever happened; then the result is
    read and copied to ``artifacts/result.json``."""
    result_file = work / "result.json"
    config_file = work / "config.json"
    started = time.monotonic()
    try:
        if artifacts.exists():
            shutil.rmtree(artifacts)
        artifacts.mkdir(parents=True)
        config_file.write_text(
            json.dumps({**config, "artifacts": str(artifacts), "result": str(result_file)})
        )
        proc = subprocess.Popen(
            ["node", str(BROWSER_DIR / spec), str(config_file)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        if cleanup is not None:
            cleanup()
    result = json.loads(result_file.read_text())
    (artifacts / "result.json").write_text(json.dumps(result, indent=1))
    return SpecRun(returncode, result, time.monotonic() - started)
