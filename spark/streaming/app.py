"""The long-running Spark Structured Streaming application (DESIGN.md, Processing).

    video-frames (Redis) -> [redis-frames source, one partition]
        [-> mapInPandas: batched detect + embed of the whole micro-batch (BATCHED_DETECT=1, GPU)]
        -> groupBy(video_id).transformWithStateInPandas: decode, live stride, detect, embed,
           DeepSORT, speed, analytics, draw, encode (no exchange: one partition end to end)
        -> foreachBatch: idempotent MULTI to processed-frames + progress + violations + analytics

Run from the repository root with the venv's Python (local[*] unless SPARK_MASTER is set)::

    REDIS_HOST=127.0.0.1 REDIS_PORT=6379 .venv/bin/python spark/streaming/app.py

or ``.venv/bin/python -m spark.streaming.app``, or ``spark-submit spark/streaming/app.py`` with
PYSPARK_PYTHON pointing at the venv. Settings: ``spark.streaming.settings.SparkSettings`` (read
once here, passed down to the stages; every name in .env.example): the checkpoint is the subfolder
``checkpoint_layout()`` of SPARK_CHECKPOINT_DIR (default ``.local/spark-checkpoint``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):  # run as a script: make ``spark.streaming`` importable
    sys.path.insert(0, str(REPO_ROOT))

if TYPE_CHECKING:
    from spark.streaming.settings import SparkSettings

log = logging.getLogger("traffic_streaming.app")

ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# The query's checkpoint lives in SPARK_CHECKPOINT_DIR/<layout>. A new layout (another plan, other
# shuffle partitions, another state schema) cannot restore an older checkpoint: it starts in
# its own folder, and the old one is named in the log (no frame of a finished run is lost: runs in
# flight are restarted by Airflow).
CHECKPOINT_LAYOUT = "v2-single-pass"
CHECKPOINT_LAYOUT_BATCHED = "v2-batched-detect"  # the plan with the batched detection stage


def checkpoint_layout(settings: SparkSettings) -> str:
    """The checkpoint folder of this plan: with or without the batched detection stage, and the
    number of shuffle partitions when not 1 (a checkpoint keeps the number it was made with)."""
    layout = CHECKPOINT_LAYOUT_BATCHED if settings.batched_detect else CHECKPOINT_LAYOUT
    partitions = settings.SHUFFLE_PARTITIONS
    return layout if partitions == 1 else f"{layout}-p{partitions}"


def configure_environment() -> None:
    """Before the JVM starts: workers run this interpreter and can import ``spark.streaming``."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


def check_model(settings: SparkSettings) -> str | None:
    """The model path problem, if any, without loading it (workers load it once each)."""
    from traffic_processing.detector import ModelLoadError, _check_model_path, resolve_model_path

    try:
        _check_model_path(resolve_model_path(settings.MODEL_PATH or None))
    except ModelLoadError as exc:
        return str(exc)
    return None


def check_device(settings: SparkSettings) -> str | None:
    """DETECTOR_DEVICE's problem, if any (a GPU asked for where there is none): the application
    refuses to start rather than failing at the first frame."""
    from traffic_processing.device import DeviceError, resolve_device

    try:
        resolve_device(settings.DETECTOR_DEVICE)
    except DeviceError as exc:
        return str(exc)
    return None


def checkpoint_path(base: str, settings: SparkSettings) -> str:
    """The query's checkpoint folder under ``base`` for this CHECKPOINT_LAYOUT (created). A
    checkpoint of an older layout (files right in ``base``, or another layout's folder) is left
    alone and named in the log."""
    root = Path(base).resolve()
    layout = checkpoint_layout(settings)
    path = root / layout
    if not path.exists():
        old = [p.name for p in root.iterdir()] if root.is_dir() else []
        if old:
            log.warning(
                "[SPARK-APP] checkpoint layout %s is new: starting it in %s. The older checkpoint "
                "in %s (%s) is not used and can be deleted.",
                layout,
                path,
                root,
                ", ".join(sorted(old)),
            )
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def build_session(settings: SparkSettings, app_name: str = "traffic-streaming"):  # noqa: ANN201 - SparkSession
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if settings.SPARK_MASTER or "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
        builder = builder.master(settings.SPARK_MASTER or "local[*]")
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(settings.SHUFFLE_PARTITIONS))
        .config("spark.sql.streaming.stateStore.providerClass", ROCKSDB_PROVIDER)
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", settings.SPARK_DRIVER_MEMORY)
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        .config("spark.ui.enabled", str(settings.SPARK_UI).lower())
        # The UI shows the application to whoever reaches it: at least its buttons that kill
        # jobs and stages are off (make demo also binds it on loopback: SPARK_LOCAL_IP)
        .config("spark.ui.killEnabled", "false")
    )
    if settings.cluster:
        builder = cluster_config(builder, settings)
    return builder.getOrCreate()


def cluster_config(builder, settings: SparkSettings):  # noqa: ANN001, ANN201 - SparkSession.Builder
    """A standalone master: one executor per worker, and the first job only once every worker's
    executor has registered (``minRegisteredResourcesRatio`` of ``spark.cores.max``), so that
    the warm-up loads the models on all of them. A task lost with its executor (a worker gone)
    is retried on another one (``spark.task.maxFailures``), its state store loaded from the
    checkpoint."""
    from contracts.settings import resolve_token

    secret = resolve_token("SPARK_AUTH_SECRET", settings.SPARK_AUTH_SECRET, settings.SECRETS_DIR)
    builder = (
        builder.config("spark.authenticate", "true")
        .config("spark.authenticate.secret", secret)
        .config("spark.executor.memory", settings.SPARK_EXECUTOR_MEMORY)
        .config("spark.executor.cores", str(settings.SPARK_WORKER_CORES))
        .config("spark.task.maxFailures", "8")
    )
    if settings.SPARK_WORKERS:
        builder = (
            builder.config("spark.cores.max", str(settings.SPARK_WORKERS * settings.SPARK_WORKER_CORES))
            .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
            .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s")
        )
    if settings.SPARK_ARCHIVES:
        builder = builder.config("spark.archives", settings.SPARK_ARCHIVES)
    if settings.SPARK_EXECUTOR_PYTHON:
        builder = builder.config("spark.pyspark.python", settings.SPARK_EXECUTOR_PYTHON)
    return builder


def build_query(spark, settings: SparkSettings, options: dict[str, str], checkpoint_dir: str, on_batch=None):  # noqa: ANN001, ANN201
    from spark.streaming.detect_stage import DETECT_SCHEMA, detect_partition
    from spark.streaming.redis_source import RedisStreamDataSource, redis_client
    from spark.streaming.sink import BatchSink
    from spark.streaming.stages import OUTPUT_SCHEMA, make_state_processor

    spark.dataSource.register(RedisStreamDataSource)
    frames = spark.readStream.format(RedisStreamDataSource.name()).options(**options).load()
    if settings.batched_detect:  # GPU: every frame of the micro-batch through the network at once
        frames = frames.mapInPandas(partial(detect_partition, settings), DETECT_SCHEMA)
    processed = frames.groupBy("video_id").transformWithStateInPandas(
        statefulProcessor=make_state_processor(settings),
        outputStructType=OUTPUT_SCHEMA,
        outputMode="Append",
        timeMode="None",
    )
    sink = BatchSink(lambda: redis_client(options), on_batch=on_batch, log_timing=settings.LOG_TIMING)
    trigger_ms = settings.TRIGGER_MS
    return (
        processed.writeStream.queryName("traffic-processed-frames")
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint_dir)
        .trigger(processingTime=f"{trigger_ms} milliseconds")
        .start()
    )


def warm_up(spark, settings: SparkSettings, workers: int) -> None:  # noqa: ANN001
    """Load the models in the Python workers before the query starts (its tasks reuse idle
    workers, so the first batches do not pay for model loading)."""
    from spark.streaming.stages import warm_partitions

    # A task of the query holds two Python workers (the source's read and mapInPandas), either of
    # which may run the detection next time: warm two per source partition, as far as the task
    # slots let them run at once.
    n = max(1, min(2 * workers, spark.sparkContext.defaultParallelism))
    if settings.cluster:  # a task per executor core at least: every executor loads the models
        n = max(n, spark.sparkContext.defaultParallelism)
    spark.range(n, numPartitions=n).mapInPandas(partial(warm_partitions, settings), "ok int").collect()


def add_progress_logger(spark) -> None:  # noqa: ANN001
    """LOG_PROGRESS=1: one line per micro-batch with Spark's own timings (ms)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class ProgressLogger(StreamingQueryListener):
        def onQueryStarted(self, event) -> None:  # noqa: ANN001
            pass

        def onQueryProgress(self, event) -> None:  # noqa: ANN001
            p = event.progress
            log.info("[SPARK-APP] batch %s: %s rows, durations %s", p.batchId, p.numInputRows, p.durationMs)

        def onQueryIdle(self, event) -> None:  # noqa: ANN001
            pass

        def onQueryTerminated(self, event) -> None:  # noqa: ANN001
            pass

    spark.streams.addListener(ProgressLogger())


WARMUP_VIDEO_ID = 0  # never a real video (ids start at 1)


def warm_query(options: dict[str, str], timeout_s: float = 180.0) -> bool:
    """Run a first tiny stream through the query before reporting ready: the stateful stage's
    Python worker loads the detector and the embedder, and RocksDB and the sink do their first
    commit, so the first user stream is not cold. Two frames of ultralytics' bundled bus.jpg for
    video 0, then its keys are removed. True when it went through within ``timeout_s``."""
    import cv2
    import numpy as np

    from contracts import streams
    from contracts.messages import FrameConfig, StreamProgress, VideoFrame
    from spark.streaming.redis_source import redis_client

    try:
        import ultralytics

        image = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    except Exception:  # noqa: BLE001 - any picture will do
        image = None
    image = cv2.resize(image if image is not None else np.zeros((360, 640, 3), np.uint8), (640, 360))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    client = redis_client(options)
    key = streams.progress_key(WARMUP_VIDEO_ID)
    try:
        client.delete(key)
        config = FrameConfig(fps=25.0, realtime=False)
        for n in range(2):
            frame = VideoFrame(
                video_id=WARMUP_VIDEO_ID,
                frame_number=n,
                frame_data=jpeg,
                timestamp=n / 25.0,
                produced_at=time.time(),
                config=config,
                end_of_stream=n == 1,
                run_id=f"warm-up-{os.getpid()}",
            )
            client.xadd(streams.VIDEO_FRAMES, frame.to_fields())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if StreamProgress.from_hash(client.hgetall(key)).eos_processed:
                return True
            time.sleep(0.2)
        return False
    finally:
        client.delete(key, streams.analytics_key(WARMUP_VIDEO_ID))
        client.close()


def start_heartbeat(options: dict, query: Any) -> threading.Thread:
    """Keep ``PROCESSOR_HEARTBEAT_KEY`` set while the query is active (a daemon thread); a Redis
    outage only delays it."""
    from contracts import streams
    from spark.streaming.redis_source import redis_client

    def beat() -> None:
        client = redis_client(options)
        every = streams.PROCESSOR_HEARTBEAT_TTL_S / 3
        while query.isActive:
            try:
                client.set(
                    streams.PROCESSOR_HEARTBEAT_KEY, repr(time.time()), ex=streams.PROCESSOR_HEARTBEAT_TTL_S
                )
            except Exception as exc:  # noqa: BLE001 - Redis down: the key expires, we retry
                log.warning("[SPARK-APP] heartbeat not written: %s", exc)
            time.sleep(every)

    thread = threading.Thread(target=beat, name="processor-heartbeat", daemon=True)
    thread.start()
    return thread


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("py4j", "pyspark", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()
    configure_environment()

    from spark.streaming.redis_source import redis_client
    from spark.streaming.settings import SparkSettings
    from spark.streaming.sink import reset_if_fresh_checkpoint

    settings = SparkSettings()
    checkpoint_dir = checkpoint_path(
        settings.SPARK_CHECKPOINT_DIR or str(REPO_ROOT / ".local/spark-checkpoint"), settings
    )
    options = {
        "host": settings.REDIS_HOST,
        "port": str(settings.REDIS_PORT),
        # Spark redacts option values whose key matches spark.redaction.regex (password) in its UI
        "password": settings.REDIS_PASSWORD,
        "maxEntriesPerBatch": str(settings.MAX_ENTRIES_PER_BATCH),
        # One partition: with one shuffle partition the stateful stage then needs no exchange.
        # The detector and the embedder use every core themselves.
        "numPartitions": str(settings.SOURCE_PARTITIONS),
        # One partition: read on the driver (no Python reader task per batch); several: id ranges
        # read by executor tasks (a cluster).
        "reader": "simple" if settings.SOURCE_PARTITIONS == 1 else "partitioned",
    }
    problem = check_model(settings)
    device_problem = check_device(settings)
    if device_problem:
        log.error("[SPARK-APP] FATAL: %s", device_problem)
        return 2
    if problem:
        log.error(
            "[SPARK-APP] FATAL: %s. Frames will fail and each video's progress gets fatal_error.", problem
        )
    client = redis_client(options)
    client.ping()
    if reset_if_fresh_checkpoint(client, checkpoint_dir):
        log.info("[SPARK-APP] fresh checkpoint %s: sink batch id reset", checkpoint_dir)
    client.close()

    first = {"done": False}
    totals = {"rows": 0, "batches": 0}

    def on_batch(batch_id: int, rows: int, seconds: float) -> None:
        totals["rows"] += rows
        totals["batches"] += 1
        if rows and not first["done"]:
            first["done"] = True
            log.info(
                "[SPARK-APP] first batch %s written: %s rows, %.1f s after start",
                batch_id,
                rows,
                time.monotonic() - started,
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[SPARK-APP] batch %s: %s rows in %.3f s", batch_id, rows, seconds)

    spark = build_session(settings)
    spark.sparkContext.setLogLevel("WARN")
    if settings.ship_model:
        from spark.streaming.shipping import ship_model

        settings = ship_model(spark.sparkContext, settings)
    if settings.LOG_PROGRESS:
        add_progress_logger(spark)
    if settings.WARM_UP:
        warm_up(spark, settings, settings.SOURCE_PARTITIONS)
        log.info("[SPARK-APP] Python workers warmed up, %.1f s after start", time.monotonic() - started)
    query = build_query(spark, settings, options, checkpoint_dir, on_batch)
    if settings.WARM_UP:
        warmed = warm_query(options)
        log.info(
            "[SPARK-APP] first batch %s, %.1f s after start",
            "processed (models loaded in the stage's worker)" if warmed else "NOT processed in time",
            time.monotonic() - started,
        )
    start_heartbeat(options, query)
    log.info(
        "[SPARK-APP] streaming %s:%s video-frames -> processed-frames (master %s, checkpoint %s), "
        "ready %.1f s",
        options["host"],
        options["port"],
        spark.sparkContext.master,
        checkpoint_dir,
        time.monotonic() - started,
    )
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        query.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
