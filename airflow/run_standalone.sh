#!/usr/bin/env bash
# `airflow standalone` (api-server + scheduler + dag-processor, LocalExecutor; no triggerer:
# airflow/standalone.py) for the local run and the Airflow image, on this repo's DAGs.
# Install first: bash airflow/install.sh
#
# Env (all optional; a repo-root .env is read first, the environment wins over it):
#   AIRFLOW_PORT        api-server port (UI + REST + execution API), default 8080
#   AIRFLOW_USERNAME    admin user of the simple auth manager, default admin
#   AIRFLOW_PASSWORD    its password (written to $AIRFLOW_HOME/passwords.json); never an example
#                       value (admin, change-me, ...); unset: generated once into
#                       $SECRETS_DIR/airflow_password (default .local/secrets), which the backend
#                       reads too
#   AIRFLOW_HOME        default .local/airflow
#   AIRFLOW_TRIGGERER   true: run the triggerer too (a DAG with deferrable tasks); default false
#   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN  Airflow's metadata DB, e.g. a database "airflow" on the
#                       project's PostgreSQL: postgresql+psycopg://postgres:PASSWORD@127.0.0.1:5432/airflow
#                       (default: SQLite $AIRFLOW_HOME/airflow.db; Airflow 3's LocalExecutor
#                       runs produce_frames and process_frames side by side on it too)
#   DATABASE_URL, REDIS_HOST, REDIS_PORT, SPEED_LIMIT_KMH, VIDEO_STORAGE_PATH, PIPELINE_STALL_TIMEOUT_S,
#   PIPELINE_PROCESSOR_WAIT_S, PIPELINE_JPEG_QUALITY, MAX_BACKLOG_FRAMES   passed to the tasks
#                       (traffic_pipeline.config.PipelineSettings; DESIGN.md, Configuration)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# .env first, without overriding what the caller exported.
if [[ -f .env ]]; then
  while IFS='=' read -r key value || [[ -n "$key" ]]; do
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] && continue
    value="${value%\"}"; value="${value#\"}"; value="${value%\'}"; value="${value#\'}"
    export "$key=$value"
  done < .env
fi

VENV="${AIRFLOW_VENV:-$ROOT/.airflow-venv}"
[[ -x "$VENV/bin/airflow" ]] || { echo "no Airflow venv at $VENV: run bash airflow/install.sh" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"

PORT="${AIRFLOW_PORT:-8080}"
USERNAME="${AIRFLOW_USERNAME:-admin}"
# The password: the one given (no example value), else the generated one kept in SECRETS_DIR.
PASSWORD="$("$VENV/bin/python" - "${AIRFLOW_PASSWORD:-}" "${SECRETS_DIR:-.local/secrets}" <<'PY'
import sys
from contracts.settings import ensure_secret, weak_secret
given, secrets_dir = sys.argv[1].strip(), sys.argv[2]
if given and (problem := weak_secret(given)):
    sys.exit(f"AIRFLOW_PASSWORD {problem}: set a long random value, or unset it to have one generated")
print(given or ensure_secret(secrets_dir, "airflow_password"))
PY
)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.local/airflow}"
mkdir -p "$AIRFLOW_HOME"

export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__API__HOST="${AIRFLOW_HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
# The scheduler's and the triggerer's log servers on loopback, where the api-server looks for a
# running task's log (Airflow binds them on every interface: traffic_pipeline/loopback.py).
export AIRFLOW_LOG_SERVER_HOST="${AIRFLOW_LOG_SERVER_HOST:-127.0.0.1}"
export AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS="${AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS:-traffic_pipeline.loopback.LOGGING_CONFIG}"
export AIRFLOW__CORE__HOSTNAME_CALLABLE="${AIRFLOW__CORE__HOSTNAME_CALLABLE:-traffic_pipeline.loopback.hostname}"
# Idle cost (make bench-e2e prints the idle CPU per component). Each setting below has its
# default from the environment (.env), e.g. AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=30.
# New DAG files: the folder is listed every 30 s.
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
# An unchanged DAG file is parsed again every 10 min, not every 30 s (Airflow's default: a
# parsing process each time); a changed one (newer mtime) is parsed within a second or two all
# the same ("modified_time" order).
export AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE="${AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE:-modified_time}"
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="${AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL:-600}"
# One parsing process: there is one DAG file.
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}"
# Scheduler housekeeping queries: tasks without heartbeat (they time out after 300 s) looked for
# every 60 s, not 10 s; trigger timeouts (no deferrable task here) every 5 min, not 15 s. The
# scheduler's idle sleep stays at 1 s: a triggered run waits for the next loop.
# No DAG here has a schedule (runs are triggered through the API, which the scheduler still
# starts): no looking for DAGs due a run in every loop.
export AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="${AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE:-False}"
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="${AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL:-60}"
export AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="${AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL:-300}"
# Logging: no "DAG File Processing Stats" table every 30 s in the output (the UI shows the
# parse state; set it to 30 to get the table back).
export AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL="${AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL:-0}"

# Simple auth manager: one admin with a known password.
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$USERNAME:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
"$VENV/bin/python" - "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" "$USERNAME" "$PASSWORD" <<'PY'
import json, os, sys
path, user, password = sys.argv[1:]
with open(path, "w") as f:
    json.dump({user: password}, f)
os.chmod(path, 0o600)
PY

# One JWT secret and API secret key for every component, kept across restarts.
secret_file="$AIRFLOW_HOME/.secrets"
if [[ ! -f "$secret_file" ]]; then
  umask 077
  "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32)); print(secrets.token_urlsafe(32))' >"$secret_file"
fi
export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(sed -n 1p "$secret_file")}"
export AIRFLOW__API__SECRET_KEY="${AIRFLOW__API__SECRET_KEY:-$(sed -n 2p "$secret_file")}"

# Metadata DB: the given one (PostgreSQL: async access through psycopg 3 too, no asyncpg), else SQLite.
if [[ -n "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]]; then
  case "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in
    postgresql://* | postgres://*)
      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg://${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN#*://}" ;;
  esac
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  case "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in
    postgresql+psycopg://*)
      export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC:-$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}" ;;
  esac
  # Create the database (e.g. "airflow" next to the project's) when it is missing.
  "$VENV/bin/python" - "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" <<'PY'
import sys
from sqlalchemy import create_engine, make_url, text
url = make_url(sys.argv[1])
if url.get_backend_name() == "postgresql" and url.database:
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first():
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
            print(f"created database {url.database}")
    admin.dispose()
PY
else
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
fi

# The task code's settings, with the project's defaults.
export VIDEO_STORAGE_PATH="$(cd "$ROOT" && realpath -m "${VIDEO_STORAGE_PATH:-video_storage}")"

echo "Airflow standalone on http://localhost:$PORT (user $USERNAME), home $AIRFLOW_HOME, dags $AIRFLOW__CORE__DAGS_FOLDER"
# `airflow standalone` without the triggerer (no deferrable task: it would only poll and
# heartbeat), unless AIRFLOW_TRIGGERER=true.
exec "$VENV/bin/python" "$ROOT/airflow/standalone.py"
