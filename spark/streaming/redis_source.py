"""A PySpark streaming data source over the Redis stream ``video-frames`` (DESIGN.md, Processing).

Offsets are stream ids (``{"id": "1700000000000-0"}``); a micro-batch is the range
``(start, end]``. ``latestOffset`` admits at most ``maxEntriesPerBatch`` entries past the start
(admission control, Spark >= 4.2), fewer while live videos ask for less
(``streams.READ_LIMIT_KEY``, kept by the stateful stage from its measured costs), and entries
the stage already read ahead come without their JPEG (``streams.PULLED_KEY``),
``partitions`` splits the range into a few contiguous id
ranges (the stateless stage then runs on all cores), ``read`` pages through its range with
exclusive XRANGE (Redis >= 6.2) and ``commit`` trims the stream with ``XTRIM MINID`` behind the
committed end only: never ``MAXLEN``, so no frame that is not yet read is ever cut.

Usage::

    spark.dataSource.register(RedisStreamDataSource)
    spark.readStream.format("redis-frames").option("host", "127.0.0.1").option("port", 6379).load()

Options (all optional): ``host``/``port``/``db`` (default 127.0.0.1:6379; the application
passes its settings' REDIS_HOST/REDIS_PORT), ``stream`` (``video-frames``),
``maxEntriesPerBatch`` (64; the app passes 128), ``numPartitions`` (2), ``pageSize`` (16),
``trim`` (``true``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.errors import PySparkNotImplementedError
from pyspark.sql.datasource import (
    DataSource,
    DataSourceStreamReader,
    InputPartition,
    SimpleDataSourceStreamReader,
)
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows

from contracts.messages import VideoFrame
from contracts.streams import VIDEO_FRAMES, parse_stream_id, text
from spark.streaming.publisher import read_limit, strip_pulled

log = logging.getLogger("traffic_streaming.source")

SCHEMA = (
    "video_id int, frame_number int, stream_id string, frame_data binary, timestamp double, "
    "produced_at double, config string, end_of_stream boolean, run_id string"
)
INITIAL_ID = "0-0"

# Ids only (no frame bytes) of up to ARGV[3] entries in (ARGV[1], ARGV[2]]: planning on the driver
# never moves JPEGs.
_IDS_SCRIPT = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local ids = {}
for i, e in ipairs(entries) do ids[i] = e[1] end
return ids
"""


def next_id(stream_id: str) -> str:
    """The smallest id after ``stream_id``."""
    ms, seq = parse_stream_id(stream_id)
    return f"{ms}-{seq + 1}"


def redis_client(options: dict[str, str]) -> Any:
    """A binary-safe client on the ``host``/``port``/``db``/``password`` options (the application
    passes its settings' REDIS_HOST/REDIS_PORT/REDIS_PASSWORD; default 127.0.0.1:6379, no AUTH)."""
    import redis

    return redis.Redis(
        host=options.get("host") or "127.0.0.1",
        port=int(options.get("port") or 6379),
        db=int(options.get("db") or 0),
        password=options.get("password") or None,
        socket_timeout=30,
        socket_connect_timeout=10,
        health_check_interval=30,
    )


def entry_to_row(stream_id: str, fields: dict[bytes, bytes]) -> tuple | None:
    """One ``video-frames`` entry (decoded by ``VideoFrame.from_fields``) as a row of SCHEMA;
    None (logged) when it does not decode: such an entry cannot be routed to a video. ``config``
    is the FrameConfig JSON ("" without one); ``run_id`` is None when the entry has none."""
    try:
        frame = VideoFrame.from_fields(fields)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning("skipping malformed video-frames entry %s: %r", stream_id, exc)
        return None
    return (
        frame.video_id,
        frame.frame_number,
        stream_id,
        frame.frame_data,
        frame.timestamp,
        frame.produced_at,
        frame.config.model_dump_json() if frame.config is not None else "",
        frame.end_of_stream,
        frame.run_id,
    )


@dataclass
class IdRangePartition(InputPartition):
    """Stream entries with ids in (start, end]."""

    start: str
    end: str


class RedisStreamReader(DataSourceStreamReader):
    def __init__(self, options: dict[str, str]) -> None:
        # Spark hands options over case-insensitively (lower-cased keys): look them up lower-cased.
        self.options = {str(k).lower(): str(v) for k, v in dict(options).items()}
        self.stream = self.options.get("stream", VIDEO_FRAMES)
        self.max_entries = int(self.options.get("maxentriesperbatch", 64))
        self.num_partitions = max(1, int(self.options.get("numpartitions", 2)))
        self.page_size = max(1, int(self.options.get("pagesize", 16)))
        self.trim = self.options.get("trim", "true").lower() == "true"
        self._client: Any = None
        self._planned: tuple[str, str, list[str]] | None = None  # (start, end, ids) of latestOffset

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = redis_client(self.options)
        return self._client

    def _ids(self, start: str, end: str = "+", count: int | None = None) -> list[str]:
        ids = self.client.eval(_IDS_SCRIPT, 1, self.stream, "(" + start, end, str(count or 1_000_000_000))
        return [text(i) for i in ids]

    # -- driver side ----------------------------------------------------------------------
    def initialOffset(self) -> dict:
        return {"id": INITIAL_ID}

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_entries) if self.max_entries > 0 else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        begin = (start or {}).get("id", INITIAL_ID)
        if isinstance(limit, ReadMaxRows):
            ids = self._ids(begin, "+", read_limit(self.client, limit.max_rows))
            if not ids:
                return {"id": begin}
            self._planned = (begin, ids[-1], ids)
            return {"id": ids[-1]}
        last = self.client.xrevrange(self.stream, "+", "-", count=1)
        if not last or parse_stream_id(last[0][0]) <= parse_stream_id(begin):
            return {"id": begin}
        return {"id": text(last[0][0])}

    def reportLatestOffset(self) -> dict | None:
        last = self.client.xrevrange(self.stream, "+", "-", count=1)
        return {"id": text(last[0][0])} if last else None

    def partitions(self, start: dict, end: dict) -> list[IdRangePartition]:
        begin, stop = start.get("id", INITIAL_ID), end.get("id", INITIAL_ID)
        if parse_stream_id(stop) <= parse_stream_id(begin):
            return []
        if self._planned and self._planned[:2] == (begin, stop):
            ids = self._planned[2]
        else:  # a replayed batch after a restart: plan again from Redis
            ids = self._ids(begin, stop)
        self._planned = None
        if not ids:
            return [IdRangePartition(begin, stop)]
        n = min(self.num_partitions, len(ids))
        bounds = [ids[(len(ids) * (i + 1)) // n - 1] for i in range(n)]
        bounds[-1] = stop
        parts, lo = [], begin
        for hi in bounds:
            parts.append(IdRangePartition(lo, hi))
            lo = hi
        return parts

    def commit(self, end: dict) -> None:
        """Spark has durably processed every entry up to ``end``: drop them (only those)."""
        if not self.trim:
            return
        committed = end.get("id", INITIAL_ID)
        if committed == INITIAL_ID:
            return
        try:
            self.client.xtrim(self.stream, minid=next_id(committed), approximate=False)
        except Exception as exc:  # trimming is housekeeping: never fail the query for it
            log.warning("XTRIM %s MINID %s failed: %r", self.stream, committed, exc)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- executor side --------------------------------------------------------------------
    def read(self, partition: IdRangePartition) -> Iterator[tuple]:
        return read_range(self.options, self.stream, partition.start, partition.end, self.page_size)


def read_range(options: dict[str, str], stream: str, start: str, end: str, page_size: int) -> Iterator[tuple]:
    """Rows of the entries in (start, end], paged with exclusive XRANGE."""
    client = redis_client(options)
    try:
        cursor = start
        while True:
            page = client.xrange(stream, "(" + cursor, end, count=page_size)
            rows = [row for sid, fields in page if (row := entry_to_row(text(sid), fields)) is not None]
            yield from strip_pulled(client, rows)
            if len(page) < page_size:
                return
            cursor = text(page[-1][0])
    finally:
        client.close()


class RedisSimpleStreamReader(SimpleDataSourceStreamReader):
    """The same stream read on the driver (option ``reader=simple``, the default): ``read`` takes
    up to ``maxEntriesPerBatch`` entries after the start (admission control) and Spark hands them
    to the query as one partition, so no Python reader runs in an executor task per batch.
    ``readBetweenOffsets`` replays a batch after a restart; ``commit`` trims like the other."""

    def __init__(self, options: dict[str, str]) -> None:
        self._trimmer = RedisStreamReader(options)
        self.options, self.stream = self._trimmer.options, self._trimmer.stream
        self.max_entries, self.page_size = self._trimmer.max_entries, self._trimmer.page_size

    def initialOffset(self) -> dict:
        return {"id": INITIAL_ID}

    def read(self, start: dict) -> tuple[Iterator[tuple], dict]:
        begin = (start or {}).get("id", INITIAL_ID)
        count = self.max_entries if self.max_entries > 0 else 1_000_000_000
        count = read_limit(self._trimmer.client, count)  # admission: the live videos' allowances
        page = self._trimmer.client.xrange(self.stream, "(" + begin, "+", count=count)
        if not page:
            return iter(()), {"id": begin}
        rows = [row for sid, fields in page if (row := entry_to_row(text(sid), fields)) is not None]
        return iter(strip_pulled(self._trimmer.client, rows)), {"id": text(page[-1][0])}

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[tuple]:
        return read_range(
            self.options, self.stream, start.get("id", INITIAL_ID), end.get("id", INITIAL_ID), self.page_size
        )

    def commit(self, end: dict) -> None:
        self._trimmer.commit(end)

    def stop(self) -> None:
        self._trimmer.stop()


class RedisStreamDataSource(DataSource):
    """``format("redis-frames")``: the ``video-frames`` stream as a streaming DataFrame; option
    ``reader``: ``simple`` (default: read on the driver, one partition) or ``partitioned``
    (``numPartitions`` id ranges read by executor tasks, for a cluster)."""

    @classmethod
    def name(cls) -> str:
        return "redis-frames"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> RedisStreamReader:
        if str(self.options.get("reader", "simple")).lower() != "partitioned":
            raise PySparkNotImplementedError(
                errorClass="NOT_IMPLEMENTED", messageParameters={"feature": "streamReader"}
            )
        return RedisStreamReader(self.options)

    def simpleStreamReader(self, schema: Any) -> RedisSimpleStreamReader:
        return RedisSimpleStreamReader(self.options)
