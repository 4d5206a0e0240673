"""The DAG file parses in Airflow's own venv (.airflow-venv) with zero import errors and has
the structure of DESIGN.md, Data flow 4."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from contracts import streams

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = AIRFLOW_DIR.parent
AIRFLOW_PYTHON = Path(os.environ.get("AIRFLOW_VENV", REPO_ROOT / ".airflow-venv")) / "bin" / "python"

INSPECT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": None if dag.schedule is None else str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "params": {k: dag.params[k] for k in dag.params},
        "tasks": {
            t.task_id: {
                "upstream": sorted(t.upstream_task_ids),
                "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                "retries": t.retries,
            }
            for t in dag.tasks
        },
    }
print("JSON:" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory) -> dict:
    if not AIRFLOW_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Airflow venv at {AIRFLOW_PYTHON}: run bash airflow/install.sh")
        pytest.skip(f"no Airflow venv at {AIRFLOW_PYTHON} (bash airflow/install.sh)")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "PYTHON")) and k not in {"AIRFLOW_HOME", "VIRTUAL_ENV"}
    }
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(AIRFLOW_DIR / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    proc = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", INSPECT, str(AIRFLOW_DIR / "dags")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(home),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:"))
    return json.loads(line[len("JSON:") :])


@pytest.mark.slow
def test_no_import_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert list(dagbag["dags"]) == [streams.DAG_ID]  # the id every other service uses


@pytest.mark.slow
def test_produce_and_process_run_side_by_side_then_cleanup(dagbag):
    dag = dagbag["dags"]["video_streaming_pipeline"]
    assert dag["schedule"] is None and dag["catchup"] is False
    assert dag["start_date"].startswith("2026-01-01")
    assert dag["max_active_runs"] >= 2  # two videos at once
    assert dag["params"] == {"video_id": None, "realtime": True}
    tasks = dag["tasks"]
    assert set(tasks) == {"produce_frames", "process_frames", "cleanup", "fail_run"}
    assert tasks["produce_frames"]["upstream"] == [] and tasks["process_frames"]["upstream"] == []
    assert tasks["cleanup"]["upstream"] == ["process_frames", "produce_frames"]
    assert tasks["cleanup"]["trigger_rule"] == "all_done"
    # cleanup succeeding must not hide a failure: fail_run is a leaf that fires on one.
    assert tasks["fail_run"]["upstream"] == ["process_frames", "produce_frames"]
    assert tasks["fail_run"]["trigger_rule"] == "one_failed"
    assert tasks["produce_frames"]["retries"] == 0  # a retry would stream the video twice


def test_dag_file_stays_thin():
    """Only Airflow and pendulum at the top of the DAG file: the work is imported inside tasks;
    settings come from ``PipelineSettings`` (read once per task), never from os.environ."""
    source = (AIRFLOW_DIR / "dags" / "video_streaming_pipeline.py").read_text()
    top_level = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert top_level
    assert all(
        m.split()[1].split(".")[0] in {"__future__", "datetime", "pendulum", "airflow"} for m in top_level
    )
    assert "os.environ" not in source and "getenv" not in source
    assert source.count("PipelineSettings()") == 3  # one read at the start of each working task
