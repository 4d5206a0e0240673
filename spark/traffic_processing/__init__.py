"""Traffic processing library: detection, tracking, speed and ROI analytics of video frames.

Pure library: no Spark, no Redis. Used by the ``traffic-analyze`` CLI, the tests and the
Spark job.
"""

__version__ = "0.1.0"
