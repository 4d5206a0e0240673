#!/usr/bin/env bash
# Airflow 3 in its own venv at the repo root (.airflow-venv), with the pipeline's task code.
# Idempotent: re-running only installs what changed. Usage: bash airflow/install.sh [VENV]
# VENV: the venv's path (else $AIRFLOW_VENV, else .airflow-venv). Env: PYTHON (python3.11, else python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${1:-${AIRFLOW_VENV:-.airflow-venv}}"
REQ=requirements/airflow.txt
STAMP="$VENV/.installed"

if [[ -f "$STAMP" && "$STAMP" -nt "$REQ" && "$STAMP" -nt airflow/pyproject.toml \
      && "$STAMP" -nt contracts/pyproject.toml && "$STAMP" -nt spark/pyproject.toml && "$STAMP" -nt backend/pyproject.toml ]]; then
  echo "airflow venv up to date: $VENV"
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3"
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
# Task code: the contracts (streams, messages, settings), video/visualize, the db models, and traffic_pipeline (no deps:
# the pins above are what the task code needs; the processing stack is not imported here).
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e contracts -e spark -e backend -e airflow
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import airflow.sdk, traffic_pipeline.producer, traffic_pipeline.monitor, \
traffic_pipeline.cleanup, contracts.messages, traffic_processing.video, backend.db.models; print('airflow', airflow.__version__)"
touch "$STAMP"
