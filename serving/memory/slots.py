"""Slots of a conversation: place, radius, time window, themes, audience, what each turn sets.

`serving/conversation.py` carries place and time from earlier turns into the last one. This
module adds the theme and the audience, for follow-ups that name neither: after "des concerts
à Valence ce week-end", "et dimanche soir ?" keeps the concerts (and Valence), while "et du
théâtre ?" changes the theme. Words such as "plutôt" or "sinon" only steer a follow-up and
are not a theme ("plutôt à Romans-sur-Isère" keeps the concerts and the week-end).

The same function serves both sources of earlier turns: the request's own messages, and the
turns session memory kept for a `session_id` (so a client may send only the last message).

`session_summary` says in one French line what a session is looking for ("Vous cherchiez :
concerts à Valence, ce week-end"): deterministic, from the slots and the words the user
typed (themes are stems, "concert"; the summary shows the user's own word, "concerts").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from retrieval.query import ParsedQuery
from retrieval.text import terms
from serving.conversation import contextual_query, has_place, has_time, place_words

# Steering words of a follow-up: never a theme on their own.
FOLLOW_UP_WORDS = frozenset(
    terms("plutôt plutot sinon alors aussi et encore autre chose maintenant ok merci bien")
)
# Who an outing is for: carried apart from the theme ("pour les enfants" survives "et du cirque ?").
AUDIENCE_WORDS = frozenset(
    terms("enfant enfants famille familles jeune jeunes ado ados adolescents senior seniors "
          "étudiants bébés")
)  # fmt: skip


@dataclass(frozen=True)
class Slots:
    """What the parser resolved for one question, as words it reads back the same way."""

    place: str | None = None
    time: str | None = None
    radius_km: float | None = None
    themes: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def themes_of(parsed: ParsedQuery) -> tuple[str, ...]:
    return tuple(t for t in parsed.terms if t not in FOLLOW_UP_WORDS and t not in AUDIENCE_WORDS)


def audience_of(parsed: ParsedQuery) -> tuple[str, ...]:
    return tuple(t for t in parsed.terms if t in AUDIENCE_WORDS)


def slots_of(parsed: ParsedQuery) -> Slots:
    """The slots one parse sets (empty where it names nothing)."""
    return Slots(
        place=place_words(parsed) if has_place(parsed) else None,
        time=parsed.window.label if has_time(parsed) else None,
        radius_km=parsed.near.radius_km if parsed.near is not None else None,
        themes=themes_of(parsed),
        audience=audience_of(parsed),
    )


_WORDS = re.compile(r"\w+")


def surface_words(stems: Sequence[str], texts: Sequence[str]) -> list[str]:
    """Each stem as the user last typed it ('concert' → 'concerts'); the stem if not found."""
    typed = [w for text in texts for w in _WORDS.findall(text.lower())]
    return [next((w for w in reversed(typed) if stem in terms(w)), stem) for stem in stems]


def session_summary(slots: Slots, texts: Sequence[str]) -> str:
    """'Vous cherchiez : concerts à Valence, ce week-end' (themes, audience, place, time).

    >>> session_summary(slots_of(parse("des concerts à Valence ce week-end")), [...])
    'Vous cherchiez : concerts à Valence, ce week-end'
    """
    what = " ".join(surface_words(slots.themes, texts)) or "des sorties"
    if slots.audience:
        what += " pour " + " ".join(surface_words(slots.audience, texts))
    where = f" {slots.place}" if slots.place else ""
    when = f", {slots.time}" if slots.time else ""
    return f"Vous cherchiez : {what}{where}{when}"


def turn_record(parsed: ParsedQuery, texts: Sequence[str]) -> dict[str, list[str]]:
    """What one turn resolved, for consolidation: its cities, its themes as typed."""
    return {"cities": list(parsed.cities), "themes": surface_words(themes_of(parsed), texts)}


def _latest(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    return next((v for v in reversed(values) if v), ())


def conversation_query(texts: Sequence[str], turns: Sequence[ParsedQuery]) -> str:
    """The last turn's text with the place, time, theme and audience it leaves unsaid.

    >>> conversation_query(["des concerts à Valence ce week-end", "et dimanche soir ?"], parses)
    'et dimanche soir ? à Valence concert'
    """
    query = contextual_query(texts[-1], turns)
    last, earlier = turns[-1], turns[:-1]
    extra: list[str] = []
    if not themes_of(last):
        extra += _latest([themes_of(t) for t in earlier])
    if not audience_of(last):
        extra += _latest([audience_of(t) for t in earlier])
    return " ".join([query, *extra])
