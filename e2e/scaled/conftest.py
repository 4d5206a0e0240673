"""The stack scaled out (issue 18), shared by the tests of this folder and started once: the
streaming application on a Spark standalone cluster (a master and two workers on loopback, started
here with ``spark-class``) and two backend instances behind the proxy. These tests run before the
session's one-machine stack starts (``e2e/conftest.py``), and this stack is stopped after the last
of them, so that two stacks never share the CI's two cores."""

import pytest


@pytest.fixture(scope="package")
def scaled_stack(tmp_path_factory):
    from e2e.harness import start_stack, stop_stack

    s = start_stack(tmp_path_factory.mktemp("scaled"), spark_workers=2, backends=2)
    yield s
    stop_stack(s)
