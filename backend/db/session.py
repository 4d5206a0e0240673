"""Engine, session factory, and running blocking work off the IOLoop on bounded pools.

Three thread pools, so that one kind of work never queues behind another:

- ``run``: database transactions only (``workers`` threads, as many as the engine's connections
  can serve); ``/api/health``'s ``SELECT 1`` never waits behind a probe or a decode;
- ``run_video``: long video work, decoding (the OpenCV probe of an upload, its thumbnail, a
  camera's connection test): ``video_workers`` threads, so a burst of uploads takes at most that
  many cores and the rest queue;
- ``run_file``: short blocking file work (the dashboard's files, thumbnails and snapshots read
  from disk, files removed, small computations): never behind a decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from contracts.settings import sqlalchemy_url

T = TypeVar("T")


class Database:
    """Sync SQLAlchemy engine; handlers ``await db.run(fn)`` so queries never block the loop."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        workers: int = 4,
        video_workers: int = 2,
        file_workers: int = 4,
    ) -> None:
        # postgresql:// as the settings accept it (``contracts.settings.sqlalchemy_url``)
        self.engine = create_engine(sqlalchemy_url(url), pool_size=pool_size, pool_pre_ping=True, future=True)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")
        self._video_executor = ThreadPoolExecutor(max_workers=video_workers, thread_name_prefix="video")
        self._file_executor = ThreadPoolExecutor(max_workers=file_workers, thread_name_prefix="file")

    def _call(self, fn: Callable[[Session], T]) -> T:
        with self.session_factory() as session, session.begin():
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one transaction on a database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    async def run_video(self, fn: Callable[..., T], *args: object) -> T:
        """Run long video work (decoding, probing, a camera's first frame) on the video pool."""
        return await asyncio.get_running_loop().run_in_executor(self._video_executor, fn, *args)

    async def run_file(self, fn: Callable[..., T], *args: object) -> T:
        """Run short blocking work (file reads, writes and removals) on the file pool."""
        return await asyncio.get_running_loop().run_in_executor(self._file_executor, fn, *args)

    def close(self) -> None:
        for executor in (self._executor, self._video_executor, self._file_executor):
            executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
