"""The Spark application's settings: one pydantic-settings class, read once by ``app.main`` and
passed down (the stateful processor and the ``mapInPandas`` functions carry it to the Python
workers, pickled with them). Shared names come from ``CommonSettings``."""

from __future__ import annotations

from pydantic import Field

from contracts.settings import CommonSettings


class SparkSettings(CommonSettings):
    SPARK_MASTER: str = ""  # empty: local[*]
    SPARK_CHECKPOINT_DIR: str = ""  # empty: .local/spark-checkpoint under the repository
    SPARK_UI: bool = True
    SPARK_DRIVER_MEMORY: str = "2g"
    # A standalone cluster (SPARK_MASTER=spark://...): the workers the application waits for
    # before its first job (0: do not wait), the executor's JVM heap (the models live in its
    # Python workers, outside it), and what reaches the executors the way Spark ships it:
    # SPARK_ARCHIVES (spark.archives, e.g. a venv-pack archive "env.tar.gz#env" with
    # SPARK_EXECUTOR_PYTHON=./env/bin/python) and SHIP_MODEL (the model through SparkContext.addFile,
    # read on each executor with SparkFiles.get: no shared model folder needed).
    SPARK_WORKERS: int = Field(default=0, ge=0)
    SPARK_WORKER_CORES: int = Field(default=1, ge=1)
    SPARK_EXECUTOR_MEMORY: str = "1g"
    SPARK_ARCHIVES: str = ""
    SPARK_EXECUTOR_PYTHON: str = ""
    SHIP_MODEL: bool | None = None  # None: on with a spark:// master
    # The secret every connection of the cluster is authenticated with (the daemons',
    # spark.streaming.standalone): empty, the one kept in SECRETS_DIR/spark_auth_secret
    SPARK_AUTH_SECRET: str = ""
    TRIGGER_MS: int = Field(default=150, ge=1)
    MAX_ENTRIES_PER_BATCH: int = Field(default=128, ge=1)
    # 1: the source is read on the driver; more: id ranges read by executor tasks (a cluster)
    SOURCE_PARTITIONS: int = Field(default=1, ge=1)
    # Python workers of the per-video stage (several track videos in parallel: a GPU job)
    SHUFFLE_PARTITIONS: int = Field(default=1, ge=1)
    # Models: cpu, cuda or cuda:N (detector and embedder alike); fp16 on the GPU
    DETECTOR_DEVICE: str = "cpu"
    DETECTOR_HALF: bool = False
    # The batched detection stage: None -> on with a GPU, off on the CPU
    BATCHED_DETECT: bool | None = None
    DETECT_BATCH: int = Field(default=32, ge=1)
    EMBED_BATCH: int = Field(default=64, ge=1)
    # Load the models and run a two-frame stream through the query before reporting ready
    WARM_UP: bool = True
    # Live streams (LiveStride): the latency budget (producer -> viewer, wall clock) that the
    # stride, the read limit and the dropping of late frames hold; the detection rate under
    # which a stream is "degraded", and the lowest one it may go to; the largest share of the
    # CPU the processing may take (the rest is the other services')
    LIVE_LATENCY_BUDGET_S: float = Field(default=1.0, gt=0)
    LIVE_MIN_DETECT_HZ: float = Field(default=5.0, gt=0)
    LIVE_DEGRADED_MIN_DETECT_HZ: float = Field(default=1.0, gt=0)
    LIVE_CPU_SHARE: float = Field(default=0.7, gt=0, le=1)
    # What gives first when the CPU is short: the drawing of frames that are not detected. A
    # live view keeps at least this many drawn frames per second (the others are dropped,
    # counted, before the detection rate goes down)
    LIVE_MIN_VIEW_FPS: float = Field(default=10.0, gt=0)
    # Frames dropped as too late are still detected at this rate (Hz; 0: never), for the counts
    # and speeds only (not drawn nor delivered): the frames of Spark's gap between two batches
    # (1-2 s on a loaded machine) would otherwise be a hole in the tracks where a fast vehicle
    # crosses the zone unseen. A vehicle flagged there reaches the viewers with the next frame.
    LIVE_LATE_DETECT_HZ: float = Field(default=2.5, ge=0)
    # Live frames go to processed-frames as soon as they are drawn (from the stateful stage)
    # rather than with the micro-batch's sink (see stages.py)
    LIVE_EARLY_PUBLISH: bool = True
    # A lone live stream: the stage goes on reading its newer frames from Redis for this long
    # per call (s; 0: off), so that only the frames of Spark's gap between batches wait for it
    LIVE_PULL_S: float = Field(default=5.0, ge=0)
    # Logs: the per-frame [PERFORMANCE] block, Spark's timings per batch, time per stage
    LOG_PERFORMANCE: bool = False
    LOG_PROGRESS: bool = False
    LOG_TIMING: bool = False

    @property
    def cluster(self) -> bool:
        return self.SPARK_MASTER.startswith("spark://")

    @property
    def ship_model(self) -> bool:
        return self.cluster if self.SHIP_MODEL is None else self.SHIP_MODEL

    @property
    def batched_detect(self) -> bool:
        if self.BATCHED_DETECT is not None:
            return self.BATCHED_DETECT
        return self.DETECTOR_DEVICE.startswith("cuda")
