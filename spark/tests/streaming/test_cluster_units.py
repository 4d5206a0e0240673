"""The cluster's pieces without a cluster: the standalone daemons' command lines and secret, the
application's standalone settings, and the model shipped with the job (issue 18)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from spark.streaming import shipping, standalone
from spark.streaming.settings import SparkSettings


def test_daemons_bind_the_given_host_and_keep_the_secret_off_the_command_line(tmp_path):
    env = {
        "SPARK_MASTER": "spark://127.0.0.1:7177",
        "SPARK_DAEMON_HOST": "127.0.0.1",
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "SPARK_WORKER_DIR": str(tmp_path / "w1"),
        "SPARK_WORKER_CORES": "2",
    }
    secret = standalone.auth_secret(env)
    assert len(secret) >= 32 and standalone.auth_secret(env) == secret  # generated once, kept
    props = standalone.write_properties(tmp_path / "conf", secret)
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    text = props.read_text()
    assert "spark.authenticate true" in text and f"spark.authenticate.secret {secret}" in text
    assert "spark.master.rest.enabled false" in text
    master = standalone.daemon_argv("master", env, props)
    worker = standalone.daemon_argv("worker", env, props)
    assert master[1] == standalone.MASTER_CLASS and master[master.index("--port") + 1] == "7177"
    assert worker[1] == standalone.WORKER_CLASS and worker[-1] == env["SPARK_MASTER"]
    assert worker[worker.index("--cores") + 1] == "2" and (tmp_path / "w1").is_dir()
    for argv in (master, worker):
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert not any(secret in a for a in argv)
        assert Path(argv[0]).name == "spark-class" and Path(argv[0]).exists()


def test_a_weak_secret_is_refused(tmp_path):
    with pytest.raises(ValueError, match="SPARK_AUTH_SECRET"):
        standalone.auth_secret({"SPARK_AUTH_SECRET": "change-me", "SECRETS_DIR": str(tmp_path)})


def test_daemon_refuses_a_wrong_role_or_no_spark_master(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "local[*]")
    assert standalone.main(["master"]) == 2
    monkeypatch.setenv("SPARK_MASTER", "spark://127.0.0.1:7077")
    assert standalone.main(["neither"]) == 2


def test_cluster_settings(monkeypatch):
    local = SparkSettings(SPARK_MASTER="local[*]")
    assert not local.cluster and not local.ship_model
    cluster = SparkSettings(SPARK_MASTER="spark://10.0.0.5:7077", SPARK_WORKERS=3)
    assert cluster.cluster and cluster.ship_model
    assert not SparkSettings(SPARK_MASTER="spark://h:7077", SHIP_MODEL=False).ship_model


class FakeContext:
    def __init__(self) -> None:
        self.files: list[str] = []
        self.archives: list[str] = []

    def addFile(self, path: str) -> None:  # noqa: N802 - SparkContext's name
        self.files.append(path)

    def addArchive(self, path: str) -> None:  # noqa: N802
        self.archives.append(path)


def test_a_model_folder_ships_as_an_archive_and_a_file_as_itself(tmp_path):
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    (folder / "m.xml").write_text("<xml/>")
    (folder / "m.bin").write_bytes(b"\0" * 8)
    sc = FakeContext()
    shipped = shipping.ship_model(sc, SparkSettings(MODEL_PATH=str(folder)))
    assert shipped.MODEL_PATH == "sparkfiles:m_openvino_model.zip"
    import zipfile

    assert sorted(zipfile.ZipFile(sc.archives[0]).namelist()) == ["m.bin", "m.xml"]
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert shipping.ship_model(sc, SparkSettings(MODEL_PATH=str(weights))).MODEL_PATH == "sparkfiles:w.pt"
    assert sc.files == [str(weights)]
    missing = SparkSettings(MODEL_PATH=str(tmp_path / "nope.pt"))
    assert shipping.ship_model(sc, missing) is missing  # reported by the executors as before


def test_a_shipped_model_is_read_from_the_executors_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside a Python worker of Spark: the working folder
    assert shipping.local_model_path("/models/m.pt") == "/models/m.pt"
    assert not shipping.model_here("sparkfiles:m.pt")  # the driver's schema pass: not there
    (tmp_path / "m.pt").write_bytes(b"x")
    assert shipping.local_model_path("sparkfiles:m.pt") == str(tmp_path / "m.pt")
    assert shipping.model_here("sparkfiles:m.pt") and shipping.model_here("/anything")


class RecordingBuilder:
    def __init__(self) -> None:
        self.conf: dict[str, str] = {}

    def config(self, key: str, value: str) -> RecordingBuilder:
        self.conf[key] = value
        return self


def test_the_application_on_a_cluster_authenticates_and_waits_for_its_workers(tmp_path):
    from spark.streaming.app import cluster_config

    settings = SparkSettings(
        SPARK_MASTER="spark://127.0.0.1:7077", SPARK_WORKERS=2, SPARK_WORKER_CORES=3, SECRETS_DIR=tmp_path
    )
    conf = cluster_config(RecordingBuilder(), settings).conf
    assert conf["spark.authenticate"] == "true"
    assert conf["spark.authenticate.secret"] == standalone.auth_secret({"SECRETS_DIR": str(tmp_path)})
    assert conf["spark.cores.max"] == "6" and conf["spark.executor.cores"] == "3"
    assert conf["spark.scheduler.minRegisteredResourcesRatio"] == "1.0"
    assert "spark.archives" not in conf
    shipped = SparkSettings(
        SPARK_MASTER="spark://h:7077",
        SECRETS_DIR=tmp_path,
        SPARK_ARCHIVES="env.tar.gz#env",
        SPARK_EXECUTOR_PYTHON="./env/bin/python",
    )
    conf = cluster_config(RecordingBuilder(), shipped).conf
    assert conf["spark.archives"] == "env.tar.gz#env" and conf["spark.pyspark.python"] == "./env/bin/python"
    assert "spark.cores.max" not in conf  # no worker count: no wait
