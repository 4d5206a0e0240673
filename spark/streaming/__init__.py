"""The Spark Structured Streaming application over Redis (DESIGN.md, Processing): ``app`` (entry
point), ``redis_source`` (Python streaming data source), ``stages`` (stateless and stateful
processing), ``sink`` (idempotent foreachBatch writer), ``feed`` (test/bench producer)."""
