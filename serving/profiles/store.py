"""Long-term memory: an opt-in profile per `user`, in PostgreSQL (SQLite embedded).

Nothing is stored until the user PUTs a profile; DELETE erases it. `version` grows with each
change, so cached answers biased by an older profile are not served (`serving/cache.py`).

Besides what the user chose (cities, themes, accessibility, language) a profile holds:

- **episodic notes**, "a aimé <titre>", one per thumbs-up on a cited event
  (`POST /v1/feedback` with an `event_uid`), the newest `MAX_NOTES` kept, in their own table
  (`profile_notes`, so databases created before notes existed gain it on first use);
- what **consolidation** learned from sessions (`serving/memory/consolidate.py`): cities and
  themes added to the chosen ones, visible and editable with PUT like them.

Both only ever touch a profile that exists: a user who never opted in gets nothing stored.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Integer, MetaData, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from retrieval.text import fold
from serving.memory.sql import SqlStore

MAX_ITEMS = 20
MAX_NOTES = 20
NOTE_THEMES = 5  # keywords of a liked event kept with its note (they bias ranking, bias.py)


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


class NoteRow(Base):
    __tablename__ = "profile_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(256), index=True)
    event_uid: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512))
    city: Mapped[str] = mapped_column(String(256), default="")
    themes: Mapped[list[str]] = mapped_column(JSON, default=list)
    noted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Note(BaseModel):
    """An episodic memory: the user liked a cited event."""

    text: str = Field(description="e.g. 'a aimé Concert de jazz au Sunset'.")
    event_uid: str
    city: str = ""
    themes: list[str] = Field(default_factory=list, description="The event's first keywords.")
    noted_at: datetime


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
    notes: list[Note] = Field(default_factory=list, description="Newest first.")


def _note(row: NoteRow) -> Note:
    return Note(
        text=f"a aimé {row.title}",
        event_uid=row.event_uid,
        city=row.city,
        themes=list(row.themes),
        noted_at=row.noted_at,
    )


def _notes(session: Session, user: str) -> list[Note]:
    stmt = select(NoteRow).where(NoteRow.user == user).order_by(NoteRow.id.desc())
    return [_note(row) for row in session.scalars(stmt.limit(MAX_NOTES))]


def _profile(row: ProfileRow, notes: list[Note] | None = None) -> Profile:
    return Profile(
        user=row.user,
        cities=list(row.cities),
        themes=list(row.themes),
        accessibility=list(row.accessibility),
        language=row.language,
        version=row.version,
        updated_at=row.updated_at,
        notes=notes or [],
    )


def _merged(current: list[str], extra: list[str]) -> list[str]:
    """`current` then the items of `extra` it lacks (folded: 'Théâtre' = 'theatre'), at most
    `MAX_ITEMS`."""
    seen = {fold(c) for c in current}
    added = [e for e in extra if fold(e) not in seen]
    return [*current, *added][:MAX_ITEMS]


class ProfileStore:
    """CRUD on profiles. Blocking (SQLAlchemy): call from a worker thread."""

    def __init__(self, url: str) -> None:
        self.sql = SqlStore(url, Base.metadata)

    def get(self, user: str) -> Profile | None:
        def read(session: Session) -> Profile | None:
            row = session.get(ProfileRow, user)
            return None if row is None else _profile(row, _notes(session, user))

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
            return _profile(row, _notes(session, user))

        return self.sql.run(write)

    def users(self) -> list[str]:
        """Every user who opted in (has a profile), sorted."""
        return self.sql.run(lambda session: list(session.scalars(
            select(ProfileRow.user).order_by(ProfileRow.user))))  # fmt: skip

    def add_note(self, user: str, event_uid: str, title: str, city: str, themes: list[str]) -> bool:
        """Note that `user` liked an event; False (nothing stored) without a profile.

        Liking the same event again refreshes its note rather than adding a second one.
        Bumps `version`: notes bias ranking, so answers cached before are stale."""

        def write(session: Session) -> bool:
            row = session.get(ProfileRow, user)
            if row is None:
                return False
            session.execute(
                delete(NoteRow).where(NoteRow.user == user, NoteRow.event_uid == event_uid)
            )
            now = datetime.now(UTC)
            note = NoteRow(user=user, event_uid=event_uid, title=title[:512], city=city[:256],
                           themes=themes[:NOTE_THEMES], noted_at=now)  # fmt: skip
            session.add(note)
            session.flush()
            kept = select(NoteRow.id).where(NoteRow.user == user).order_by(NoteRow.id.desc())
            old = list(session.scalars(kept.offset(MAX_NOTES)))
            if old:
                session.execute(delete(NoteRow).where(NoteRow.id.in_(old)))
            row.version, row.updated_at = row.version + 1, now
            return True

        return self.sql.run(write)

    def learn(self, user: str, cities: list[str], themes: list[str]) -> bool:
        """Add the cities and themes a user's sessions showed; True if the profile changed.

        `version` is bumped only then, so a second consolidation changes nothing. A user
        without a profile is left without one (False)."""

        def write(session: Session) -> bool:
            row = session.get(ProfileRow, user)
            if row is None:
                return False
            new_cities, new_themes = _merged(row.cities, cities), _merged(row.themes, themes)
            if new_cities == list(row.cities) and new_themes == list(row.themes):
                return False
            row.cities, row.themes = new_cities, new_themes
            row.version, row.updated_at = row.version + 1, datetime.now(UTC)
            return True

        return self.sql.run(write)

    def delete(self, user: str) -> int:
        def erase(session: Session) -> int:
            found = session.scalar(select(ProfileRow.user).where(ProfileRow.user == user))
            session.execute(delete(NoteRow).where(NoteRow.user == user))
            session.execute(delete(ProfileRow).where(ProfileRow.user == user))
            return int(found is not None)

        return self.sql.run(erase)

    def close(self) -> None:
        self.sql.close()
