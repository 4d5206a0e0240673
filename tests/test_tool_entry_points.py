"""The tools moved out of the product packages (issue 19) run as ``python -m``: each prints its
usage (a module without a ``__main__`` guard would exit 0 having done nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module",
    ["benchmarks.processor", "benchmarks.gpu", "benchmarks.fanout", "testing.synthetic", "testing.feed"],
)
def test_each_tool_runs_as_a_module(module):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: "), proc.stdout[:500]
