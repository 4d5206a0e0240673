"""The Airflow side of the streaming pipeline (DESIGN.md, Data flow 3-4).

Plain functions, unit-tested without Airflow; the DAG ``dags/video_streaming_pipeline.py``
only wires them:

- ``producer.produce_frames``: stored video -> ``video-frames`` (paced, backpressure, stop flag).
- ``monitor.watch_processing``: follows the Spark application's progress for one video.
- ``cleanup.cleanup``: analytics and violations into PostgreSQL, stream entries and keys out of Redis.

The per-video progress hash they write and read is ``contracts.messages.StreamProgress``
(its fields, their writers, the encoding); settings are ``config.PipelineSettings``.
"""

__version__ = "0.1.0"
