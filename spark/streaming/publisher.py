"""What the stateful stage writes to Redis itself, outside the micro-batch's sink.

- **Live frames, as soon as they are drawn** (``LIVE_EARLY_PUBLISH``, on by default): a live
  frame goes to ``processed-frames`` from the stage, not with the sink at the end of the
  micro-batch, so its latency no longer includes the rest of the batch, the state store's commit,
  the sink and Spark's offset and commit logs (~0.2-0.4 s a batch on 2 cores). Those frames are
  delivered at least once (a batch replayed after a crash publishes them again; the hub drops a
  frame number it already sent in the run); the progress counters, violations and the summary
  stay in the sink's exactly-once MULTI. If Redis refuses the XADD, the frame goes with the sink
  as before (never lost).
- **The read limit of the source** (admission control): each live video's allowance of entries
  per micro-batch, ``streams.READ_LIMIT_KEY`` (see ``LiveStride.read_limit``); the same hash
  tells the stage whether other streams are being served (``other_streams``).
- **Reading ahead** (``pull``): a lone live stream's newer entries of ``video-frames``, read
  (XREAD BLOCK) by the stage during its call (see ``stages._pull_ahead``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from contracts.messages import ProcessedFrame
from contracts.streams import (
    PROCESSED_FRAMES,
    PULLED_KEY,
    READ_LIMIT_FRESH_S,
    READ_LIMIT_KEY,
    VIDEO_FRAMES,
    text,
)

log = logging.getLogger("traffic_streaming.publisher")


class Publisher:
    """A process-wide Redis client of the Python worker, opened on first use."""

    def __init__(self, host: str, port: int, db: int = 0, password: str = "") -> None:
        self.options = {"host": host, "port": str(port), "db": str(db), "password": password}
        self._client: Any = None
        self._failing = False

    @property
    def client(self) -> Any:
        if self._client is None:
            from spark.streaming.redis_source import redis_client

            self._client = redis_client(self.options)
        return self._client

    def _ok(self) -> None:
        if self._failing:
            log.info("[SPARK-APP] Redis writes from the stage work again")
        self._failing = False

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._failing:
            log.warning("[SPARK-APP] %s failed (%r): left to the sink", what, exc)
        self._failing = True
        self._client = None

    def frame(self, frame: ProcessedFrame) -> bool:
        """XADD one processed frame (with its JPEG); False when Redis refused it."""
        try:
            self.client.xadd(PROCESSED_FRAMES, frame.to_fields())
        except Exception as exc:  # noqa: BLE001 - Redis down: the sink writes it instead
            self._failed("early publish of a live frame", exc)
            return False
        self._ok()
        return True

    def read_limit(self, video_id: int, rows: int | None, wall: float | None = None) -> None:
        """This video's allowance of entries per micro-batch (None: remove it)."""
        try:
            if rows is None:
                self.client.hdel(READ_LIMIT_KEY, str(video_id))
                self.client.hdel(PULLED_KEY, str(video_id))
            else:
                self.client.hset(READ_LIMIT_KEY, str(video_id), f"{rows} {wall or time.time()!r}")
        except Exception as exc:  # noqa: BLE001 - housekeeping: the source then reads its maximum
            self._failed("read limit", exc)

    def pulled(self, video_id: int, stream_id: str) -> None:
        """The last stream id of this video read ahead (``streams.PULLED_KEY``)."""
        try:
            self.client.hset(PULLED_KEY, str(video_id), stream_id)
        except Exception as exc:  # noqa: BLE001 - the source then hands over the JPEGs too
            self._failed("read-ahead mark", exc)

    def other_streams(self, video_id: int, now: float | None = None) -> bool:
        """Whether another video has a fresh read limit (it is being streamed)."""
        now = time.time() if now is None else now
        try:
            fields = self.client.hgetall(READ_LIMIT_KEY)
        except Exception as exc:  # noqa: BLE001 - be conservative: no reading ahead
            self._failed("read limits", exc)
            return True
        for key, value in fields.items():
            if text(key) == str(video_id):
                continue
            try:
                if now - float(text(value).split()[1]) <= READ_LIMIT_FRESH_S:
                    return True
            except (IndexError, ValueError):
                continue
        return False

    def pull(
        self,
        video_id: int,
        after: str,
        run_id: str | None,
        deadline: float,
        now: Callable[[], float] = time.time,
    ) -> Iterator[dict]:
        """This video's entries of ``video-frames`` after stream id ``after`` as source rows
        (dicts of ``redis_source.SCHEMA``), as they arrive, until ``deadline`` (wall clock), its
        end of stream or a row of another run (neither is consumed), or another stream shows up."""
        from spark.streaming.redis_source import SCHEMA, entry_to_row

        names = [c.split()[0] for c in SCHEMA.split(", ")]
        last, checked = after, now()
        handed, marked, marked_at = after, after, now()  # the last row handed over / marked

        def mark() -> None:
            # how far this video is read, for its producer (a camera holds back while its
            # unread frames pile up): kept fresh while reading, not only at the batch's end
            nonlocal marked, marked_at
            if handed != marked and now() - marked_at >= PULLED_MARK_S:
                self.pulled(video_id, handed)
                marked, marked_at = handed, now()

        while True:
            mark()
            remaining = deadline - now()
            if remaining <= 0:
                return
            if now() - checked > 0.5:
                if self.other_streams(video_id):
                    return
                checked = now()
            try:
                reply = self.client.xread(
                    {VIDEO_FRAMES: last}, count=64, block=max(1, int(min(remaining, 0.1) * 1000))
                )
            except Exception as exc:  # noqa: BLE001 - Redis down: Spark's next batch brings them
                self._failed("reading ahead", exc)
                return
            for stream_id, fields in reply[0][1] if reply else ():
                sid = text(stream_id)
                row = entry_to_row(sid, fields)
                if row is None or row[0] != video_id:
                    last = sid
                    continue
                record = dict(zip(names, row))
                if record["end_of_stream"] or (run_id and record["run_id"] and record["run_id"] != run_id):
                    return
                mark()
                last = sid
                yield record
                handed = sid  # processed by the caller: read


_PUBLISHERS: dict[tuple[str, int, str], Publisher] = {}
PULLED_MARK_S = 0.25  # how often ``pull`` updates ``streams.PULLED_KEY`` while it reads


def get_publisher(host: str, port: int, password: str = "") -> Publisher:
    key = (host, port, password)
    if key not in _PUBLISHERS:
        _PUBLISHERS[key] = Publisher(host, port, password=password)
    return _PUBLISHERS[key]


def read_limit(client: Any, default: int, now: float | None = None, fresh_s: float | None = None) -> int:
    """The source's limit: the sum of the fresh allowances of ``READ_LIMIT_KEY`` (at most four
    times ``default``: a stream read ahead asks for more rows than ``default``, most of them
    without their JPEG); ``default`` when there is none or Redis does not answer."""
    fresh_s = READ_LIMIT_FRESH_S if fresh_s is None else fresh_s
    now = time.time() if now is None else now
    try:
        fields = client.hgetall(READ_LIMIT_KEY)
    except Exception:  # noqa: BLE001 - the read itself will say what is wrong with Redis
        return default
    total, seen = 0, False
    for value in fields.values():
        try:
            rows, wall = text(value).split()
            if now - float(wall) <= fresh_s:
                total += int(rows)
                seen = True
        except ValueError:
            continue
    return max(1, min(4 * default, total)) if seen else default


def strip_pulled(client: Any, rows: list[tuple]) -> list[tuple]:
    """Source rows (``redis_source.SCHEMA`` tuples) with the JPEG left out of the entries the
    stage already read ahead (``streams.PULLED_KEY``; never an end of stream)."""
    from contracts.streams import parse_stream_id

    try:
        marks = {int(text(k)): parse_stream_id(v) for k, v in client.hgetall(PULLED_KEY).items()}
    except Exception:  # noqa: BLE001 - nothing stripped: correct, only heavier
        return rows
    if not marks:
        return rows
    out = []
    for row in rows:
        video_id, stream_id, eos = row[0], row[2], row[7]
        if video_id in marks and not eos and parse_stream_id(stream_id) <= marks[video_id]:
            row = (*row[:3], b"", *row[4:])
        out.append(row)
    return out
