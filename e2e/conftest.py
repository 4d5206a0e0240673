import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
# the browser tests' shared checks (SpecRun.assert_*) report like a test's own asserts
pytest.register_assert_rewrite("e2e.browser_run")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from e2e.harness import start_stack, stop_stack

    s = start_stack(tmp_path_factory.mktemp("stack"))
    yield s
    stop_stack(s)


@pytest.fixture(scope="session")
def dashboard_built():
    """The production build the backend serves and the browser suite's Node packages, for the
    tests in Chromium (e2e/browser_run.py): built once a session, only when stale."""
    from e2e.browser_run import build_dashboard

    build_dashboard()


@pytest.fixture(scope="session")
def truth(tmp_path_factory):
    """The standard ground-truth clip (8 vehicles, 30-120 km/h), rendered once."""
    from testing.synthetic import render, speeds_scenario

    out = tmp_path_factory.mktemp("truth")
    data = render(speeds_scenario(), out, "speeds")
    import json

    return Path(data["video"]), json.loads((out / "speeds_calib.json").read_text()), data


@pytest.fixture(scope="session")
def highway(tmp_path_factory):
    """The 720p highway ground-truth clip (12 vehicles, 40-130 km/h, both directions), rendered
    once: (clip, calibration, truth dict, the Scenario)."""
    import json

    from testing.synthetic import highway_scenario, render

    out = tmp_path_factory.mktemp("highway")
    scenario = highway_scenario()
    data = render(scenario, out, "highway")
    return Path(data["video"]), json.loads((out / "highway_calib.json").read_text()), data, scenario


def pytest_collection_modifyitems(session, config, items):
    """e2e/test_demo.py starts `make demo`'s stack itself and e2e/scaled/ the scaled-out one: their
    tests go first among the end-to-end tests (demo, then scaled), before the session's ``stack``
    fixture starts the other stack (it stays up until the session ends), so that two stacks never
    share the CI's two cores."""
    e2e = Path(__file__).resolve().parent
    scaled = e2e / "scaled"
    demo = [item for item in items if item.path.name == "test_demo.py"]
    cluster = [item for item in items if scaled in item.path.resolve().parents]
    if not demo and not cluster:
        return
    first = next(i for i, item in enumerate(items) if e2e in item.path.resolve().parents)
    rest = [item for item in items if item not in demo and item not in cluster]
    items[:] = rest[:first] + demo + cluster + rest[first:]
