"""Multi-turn requests: earlier user turns fill the slots the last one leaves empty.

"Du jazz à Paris en juin 2025 ?" then "Et du théâtre ?": the last turn names no place and
no time, so the search runs on "Et du théâtre ? à Paris en juin 2025". The last turn's
explicit slots always win; among earlier turns the most recent one that names a slot wins.
Only place and time carry over: the theme is what a follow-up changes.

Pure functions over parses (no store, no session memory: that is another layer's job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.query import ParsedQuery


@dataclass(frozen=True)
class CarriedSlots:
    """Words to append to the last turn so the parser sees the earlier place and time."""

    place: str | None = None
    time: str | None = None

    def words(self) -> list[str]:
        return [w for w in (self.place, self.time) if w]


def has_place(parsed: ParsedQuery) -> bool:
    return bool(parsed.cities or parsed.areas or parsed.departments or parsed.near)


def has_time(parsed: ParsedQuery) -> bool:
    """A window the words asked for (the default "from now on" has no end)."""
    return parsed.window.end is not None


def place_words(parsed: ParsedQuery) -> str:
    """Words the parser reads back as the same place."""
    if parsed.near is not None:
        return f"à moins de {parsed.near.radius_km:g} km"
    if parsed.cities:
        return " ".join(f"à {city}" for city in parsed.cities)
    return " ".join(f"en {area}" for area in parsed.areas)


def carried_slots(turns: Sequence[ParsedQuery]) -> CarriedSlots:
    """The place and time the last turn lacks, from the most recent earlier turn having them.

    >>> carried_slots([parse("Du jazz à Paris en juin 2025"), parse("Et du théâtre ?")])
    CarriedSlots(place='à Paris', time='en juin 2025')
    """
    if not turns:
        return CarriedSlots()
    last, earlier = turns[-1], list(reversed(turns[:-1]))
    place = None
    if not has_place(last):
        place = next((place_words(t) for t in earlier if has_place(t)), None)
    time = None
    if not has_time(last):
        time = next((t.window.label for t in earlier if has_time(t)), None)
    return CarriedSlots(place=place or None, time=time)


def contextual_query(text: str, turns: Sequence[ParsedQuery]) -> str:
    """The last turn's text, followed by the slots carried from earlier turns."""
    return " ".join([text, *carried_slots(turns).words()])
