"""A SQLAlchemy engine that tolerates its database being down, for profiles and feedback.

The tables are created on first successful use rather than at start-up, so the API starts
(and chat answers) while PostgreSQL is unreachable, and the tables appear once it is back.

Errors::

    StoreUnavailable   the database cannot be reached or refused the statement
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

CONNECT_TIMEOUT_S = 3
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The profile/feedback database cannot be used right now."""


def _engine(url: str) -> Engine:
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=args)


class SqlStore:
    """Runs a function in a session, creating `metadata`'s tables first if not done yet."""

    def __init__(self, url: str, metadata: MetaData) -> None:
        self.engine = _engine(url)
        self._metadata = metadata
        self._ready = False
        self._lock = threading.Lock()

    def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in one transaction; any database failure is `StoreUnavailable`."""
        try:
            self._ensure_schema()
            with Session(self.engine) as session, session.begin():
                return work(session)
        except SQLAlchemyError as exc:
            self._ready = False  # a dropped database comes back empty: recreate the tables
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc

    def _ensure_schema(self) -> None:
        with self._lock:
            if not self._ready:
                self._metadata.create_all(self.engine)
                self._ready = True

    def close(self) -> None:
        self.engine.dispose()
