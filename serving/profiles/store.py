"""Long-term memory: an opt-in profile per `user`, in PostgreSQL (SQLite embedded).

Nothing is stored until the user PUTs a profile; DELETE erases it. `version` grows with each
change, so cached answers biased by an older profile are not served (`serving/cache.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Integer, MetaData, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from serving.memory.sql import SqlStore

MAX_ITEMS = 20


class Base(DeclarativeBase):
    metadata = MetaData()


class ProfileRow(Base):
    __tablename__ = "user_profiles"

    user: Mapped[str] = mapped_column(String(256), primary_key=True)
    cities: Mapped[list[str]] = mapped_column(JSON, default=list)
    themes: Mapped[list[str]] = mapped_column(JSON, default=list)
    accessibility: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(8), default="fr")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProfileIn(BaseModel):
    """What a user chooses to share."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, max_length=256, description="Must equal the path (no auth).")
    cities: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    themes: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    accessibility: list[str] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="e.g. 'fauteuil roulant'."
    )
    language: str = Field("fr", min_length=2, max_length=8)


class Profile(ProfileIn):
    """A stored profile."""

    model_config = ConfigDict(extra="ignore")

    version: int
    updated_at: datetime


def _profile(row: ProfileRow) -> Profile:
    return Profile(
        user=row.user,
        cities=list(row.cities),
        themes=list(row.themes),
        accessibility=list(row.accessibility),
        language=row.language,
        version=row.version,
        updated_at=row.updated_at,
    )


class ProfileStore:
    """CRUD on profiles. Blocking (SQLAlchemy): call from a worker thread."""

    def __init__(self, url: str) -> None:
        self.sql = SqlStore(url, Base.metadata)

    def get(self, user: str) -> Profile | None:
        def read(session: Session) -> Profile | None:
            row = session.get(ProfileRow, user)
            return None if row is None else _profile(row)

        return self.sql.run(read)

    def put(self, user: str, profile: ProfileIn) -> Profile:
        def write(session: Session) -> Profile:
            row = session.get(ProfileRow, user)
            fields = profile.model_dump(exclude={"user"})
            now = datetime.now(UTC)
            if row is None:
                row = ProfileRow(user=user, version=1, updated_at=now, **fields)
                session.add(row)
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
                row.version, row.updated_at = row.version + 1, now
            session.flush()
            return _profile(row)

        return self.sql.run(write)

    def delete(self, user: str) -> int:
        def erase(session: Session) -> int:
            found = session.scalar(select(ProfileRow.user).where(ProfileRow.user == user))
            session.execute(delete(ProfileRow).where(ProfileRow.user == user))
            return int(found is not None)

        return self.sql.run(erase)

    def close(self) -> None:
        self.sql.close()
