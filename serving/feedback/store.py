"""Feedback on answers (thumbs up/down), in PostgreSQL (SQLite embedded), joined at write time
with what the rated answer was, so evaluation can read one table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Float, Integer, MetaData, String, Text, delete, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from serving.feedback.recent import RequestRecord
from serving.memory.sql import SqlStore


class Base(DeclarativeBase):
    metadata = MetaData()


class FeedbackRow(Base):
    __tablename__ = "answer_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    rating: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    event_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    query: Mapped[str] = mapped_column(Text)
    cited_uids: Mapped[list[str]] = mapped_column(JSON, default=list)
    model: Mapped[str] = mapped_column(String(64))
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackIn(BaseModel):
    """`POST /v1/feedback`."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128, description="The answer's x-request-id.")
    rating: Literal["up", "down"]
    reason: str | None = Field(None, max_length=2000)
    event_uid: str | None = Field(None, max_length=64, description="The cited event rated.")
    user: str | None = Field(None, max_length=256)


class FeedbackStore:
    """Blocking (SQLAlchemy): call from a worker thread."""

    def __init__(self, url: str) -> None:
        self.sql = SqlStore(url, Base.metadata)

    def add(self, feedback: FeedbackIn, record: RequestRecord, user: str | None) -> int:
        def write(session: Session) -> int:
            row = FeedbackRow(
                request_id=feedback.request_id,
                rating=feedback.rating,
                reason=feedback.reason,
                event_uid=feedback.event_uid,
                user=user,
                query=record.query,
                cited_uids=record.cited_uids,
                model=record.model,
                latency_ms=record.latency_ms,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()
            return row.id

        return self.sql.run(write)

    def rows(self, request_id: str) -> list[dict[str, object]]:
        def read(session: Session) -> list[dict[str, object]]:
            stmt = select(FeedbackRow).where(FeedbackRow.request_id == request_id)
            return [
                {c.name: getattr(r, c.name) for c in FeedbackRow.__table__.columns}
                for r in session.scalars(stmt)
            ]

        return self.sql.run(read)

    def count_for(self, user: str) -> int:
        def count(session: Session) -> int:
            stmt = select(func.count()).select_from(FeedbackRow).where(FeedbackRow.user == user)
            return session.scalar(stmt) or 0

        return self.sql.run(count)

    def delete_user(self, user: str) -> int:
        def erase(session: Session) -> int:
            result = session.execute(delete(FeedbackRow).where(FeedbackRow.user == user))
            return int(getattr(result, "rowcount", 0) or 0)

        return self.sql.run(erase)

    def close(self) -> None:
        self.sql.close()
