"""What reaches the executors of a cluster the way Spark ships it (issue 18).

- The model: ``ship_model`` adds the driver's model (a file, or an OpenVINO folder) with
  ``SparkContext.addFile``; the settings the stages carry then name it ``sparkfiles:<name>``, and
  each executor's Python worker reads its own copy with ``SparkFiles.get`` (``local_model_path``).
  No folder of models needs to be shared between the machines.
- The Python environment: ``SPARK_ARCHIVES`` (``spark.archives``, for example a ``venv-pack``
  archive ``env.tar.gz#env``) with ``SPARK_EXECUTOR_PYTHON=./env/bin/python``; see
  ``app.build_session``. On one machine the executors use the driver's interpreter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("traffic_streaming.shipping")

SPARKFILES = "sparkfiles:"


def ship_model(spark_context: Any, settings: Any) -> Any:
    """Add the model to the application's files; the settings with ``MODEL_PATH`` naming it."""
    from traffic_processing.detector import FALLBACK_MODEL, resolve_model_path

    path = resolve_model_path(settings.MODEL_PATH or None)
    if path == FALLBACK_MODEL or not Path(path).exists():
        return settings  # nothing to ship: the executors resolve (and report) it as before
    source = Path(path).resolve()
    if source.is_dir():
        # A folder (OpenVINO) goes as an archive, unpacked on each executor (spark.archives'
        # mechanism: addFile takes no local folder outside local mode)
        import shutil
        import tempfile

        packed = shutil.make_archive(
            str(Path(tempfile.mkdtemp(prefix="model-")) / source.name), "zip", root_dir=source
        )
        spark_context.addArchive(packed)
        name = Path(packed).name
    else:
        spark_context.addFile(str(source))
        name = source.name
    log.info("[SPARK-APP] model %s shipped to the executors as %s (SparkFiles)", source, name)
    return settings.model_copy(update={"MODEL_PATH": SPARKFILES + name})


def local_model_path(model_path: str) -> str:
    """The model path to load in this process: a shipped model's local copy, else as given."""
    if not model_path.startswith(SPARKFILES):
        return model_path
    import os

    from pyspark import SparkFiles

    name = model_path[len(SPARKFILES) :]
    if SparkFiles._root_directory is None:  # noqa: SLF001 - not set in the stateful stage's worker
        # an executor's files and unpacked archives are in its working directory, the worker's
        return os.path.join(os.getcwd(), name)
    return SparkFiles.get(name)


def model_here(model_path: str) -> bool:
    """False where a shipped model is not: the driver's own Python workers (Spark runs the
    stateful processor's ``init`` there once to learn its state schema)."""
    import os

    return not model_path.startswith(SPARKFILES) or os.path.exists(local_model_path(model_path))
