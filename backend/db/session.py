"""Engine, session factory, and running blocking database work off the IOLoop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


class Database:
    """Sync SQLAlchemy engine; handlers ``await db.run(fn)`` so queries never block the loop."""

    def __init__(self, url: str, *, pool_size: int = 5, workers: int = 4) -> None:
        self.engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True, future=True)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")

    def _call(self, fn: Callable[[Session], T]) -> T:
        with self.session_factory() as session, session.begin():
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one transaction on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run other blocking work (OpenCV probing, file IO) on the same pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
