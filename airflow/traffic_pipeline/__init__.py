"""The Airflow side of the streaming pipeline (DESIGN.md, Data flow 3-4).

Plain functions, unit-tested without Airflow; the DAG ``dags/video_streaming_pipeline.py``
only wires them:

- ``producer.produce_frames``: stored video -> ``video-frames`` (paced, backpressure, stop flag).
- ``monitor.watch_processing``: follows the Spark application's progress for one video.
- ``cleanup.cleanup``: analytics and violations into PostgreSQL, stream entries and keys out of Redis.

Progress hash fields added here beyond ``traffic_processing.streams`` (all optional for readers):
``run_id`` (producer: the Airflow run that owns the hash), ``started_at`` and
``producer_heartbeat`` (producer, wall clock), ``producer_error`` (producer, on failure, with
``state`` "failed"), ``monitor_error`` (process_frames, on failure), ``status`` and
``cleaned_at`` (cleanup).
"""

__version__ = "0.1.0"
