"""Consolidation: what opted-in users' live sessions resolved, counted into their profiles.

`puls memory consolidate` (a k8s CronJob) runs `consolidate()`. For each user with a profile,
and nobody else (a profile is never created here), it counts over the recent answers of their
live sessions (the last `session_max_turns` answers per session, see `sessions.py`) how often
each city and theme came up, and adds to the profile the `top` most frequent of each seen at
least `min_count` times. The profile's `version` grows only when something was added, so the
answer cache stops serving answers biased by the old profile, and a second run over the same
sessions changes nothing. Themes are counted by stem ("concert" = "concerts") and added as the
user typed them.

A user who removes a learned city with PUT sees it come back while sessions that name it are
still alive (24 h by default): sessions are the evidence, the profile its summary.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from retrieval.text import fold, terms
from serving.memory.sessions import SessionMemory
from serving.profiles.store import ProfileStore

MIN_COUNT = 2
TOP = 3


@dataclass(frozen=True)
class UserSummary:
    """One user's sessions, counted, and what consolidation added to their profile."""

    user: str
    sessions: int
    cities: dict[str, int]
    themes: dict[str, int]
    added_cities: list[str]
    added_themes: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added_cities or self.added_themes)


@dataclass(frozen=True)
class ConsolidationReport:
    users: list[UserSummary]

    def as_dict(self) -> dict[str, object]:
        changed = [u for u in self.users if u.changed]
        return {"profiles": len(self.users), "changed": len(changed),
                "users": [{**asdict(u), "changed": u.changed} for u in self.users]}  # fmt: skip

    def summary(self) -> str:
        changed = sum(u.changed for u in self.users)
        return f"{len(self.users)} profiles read, {changed} changed"


def _theme_key(word: str) -> str:
    return " ".join(terms(word)) or fold(word)


def _counted(values: list[str], key: Callable[[str], str]) -> dict[str, int]:
    """Counts by `key(value)`, shown under the latest spelling, most frequent first."""
    counts: Counter[str] = Counter()
    shown: dict[str, str] = {}
    for value in values:
        counts[key(value)] += 1
        shown[key(value)] = value
    return {shown[k]: n for k, n in counts.most_common()}


def _new(
    counts: dict[str, int], existing: list[str], key: Callable[[str], str], top: int,
    min_count: int,
) -> list[str]:  # fmt: skip
    """The `top` values counted at least `min_count` times that `existing` lacks."""
    have = {key(e) for e in existing}
    frequent = [v for v, n in counts.items() if n >= min_count][:top]
    return [v for v in frequent if key(v) not in have]


async def consolidate_user(
    user: str, sessions: SessionMemory, profiles: ProfileStore, top: int, min_count: int
) -> UserSummary | None:
    """Count `user`'s sessions into their profile; None if they have no profile."""
    profile = await asyncio.to_thread(profiles.get, user)
    if profile is None:
        return None
    states = await sessions.of_user(user)
    turns = [turn for state in states for turn in state.history]
    cities = _counted([c for t in turns for c in t.get("cities", [])], fold)
    themes = _counted([w for t in turns for w in t.get("themes", [])], _theme_key)
    added_cities = _new(cities, profile.cities, fold, top, min_count)
    added_themes = _new(themes, profile.themes, _theme_key, top, min_count)
    if added_cities or added_themes:
        await asyncio.to_thread(profiles.learn, user, added_cities, added_themes)
    return UserSummary(user, len(states), cities, themes, added_cities, added_themes)


async def consolidate(
    sessions: SessionMemory, profiles: ProfileStore, top: int = TOP, min_count: int = MIN_COUNT
) -> ConsolidationReport:
    """Every opted-in user's sessions into their profile (see the module docstring)."""
    summaries = []
    for user in await asyncio.to_thread(profiles.users):
        summary = await consolidate_user(user, sessions, profiles, top, min_count)
        if summary is not None:
            summaries.append(summary)
    return ConsolidationReport(summaries)
