"""Deterministic French query understanding: when, where and what, relative to the request's `now`.

The parse is returned with the results so users can see why they got what they got.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from retrieval.text import fold, stem

PARIS = ZoneInfo("Europe/Paris")
EVENING_STARTS = time(17, 0)
NIGHT_ENDS = time(4, 0)

MONTHS = {
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
    "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
}  # fmt: skip
WEEKDAYS = {
    "lundi": 0,
    "mardi": 1,
    "mercredi": 2,
    "jeudi": 3,
    "vendredi": 4,
    "samedi": 5,
    "dimanche": 6,
}

STOPWORDS = frozenset(
    """a au aux avec ce ces cet cette d de des du en et est il ils je j l la le les leur ma mes
    moi mon ne ni nous on ou par pas pour qu que quel quelle quelles quels qui quoi sa se ses si
    son sur ta te tes toi ton tu un une vos votre vous y dans chez il y a t
    evenement evenements sortie sortir faire idee idees activite activites quelque chose
    propose proposez proposer cherche trouver voir aller peut peux recommande conseil conseille
    avoir ya lieu lieux ville endroit programme""".split()
)

_NEAR_ME = re.compile(
    r"\b(pres de (moi|chez moi|ici)|autour de moi|pas loin|a proximite|dans le coin)\b"
)
_RADIUS = re.compile(r"\b(?:a|dans un rayon de|a moins de|moins de)\s+(\d+(?:[.,]\d+)?)\s*km\b")
_CITY_PREFIX = r"(?:^|\b(?:a|au|aux|sur|de|d|en|vers|dans|pres de|autour de|cote de)\s+)"


@dataclass(frozen=True)
class Window:
    """A half-open time interval an event must overlap, with the words that produced it."""

    start: datetime
    end: datetime | None
    label: str


@dataclass(frozen=True)
class Near:
    """A point and a radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class ParsedQuery:
    """What the deterministic parser understood. `terms` are the folded, stemmed theme words."""

    text: str
    now: datetime
    window: Window
    cities: tuple[str, ...] = ()
    near: Near | None = None
    terms: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=PARIS)


def _day(day: date) -> tuple[datetime, datetime]:
    return _at(day, time.min), _at(day + timedelta(days=1), time.min)


def _evening(day: date) -> tuple[datetime, datetime]:
    return _at(day, EVENING_STARTS), _at(day + timedelta(days=1), NIGHT_ENDS)


def _month(year: int, month: int) -> tuple[datetime, datetime]:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return _at(date(year, month, 1), time.min), _at(nxt, time.min)


def _next_weekday(today: date, weekday: int) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7)


def _upcoming_year(now: datetime, month: int, day: int = 1) -> int:
    """The year in which (month, day) is next reached from `now` (this year if not yet past)."""
    return now.year if (month, day) >= (now.month, 1 if day == 1 else now.day) else now.year + 1


def parse_when(folded: str, now: datetime) -> tuple[Window, list[str]]:
    """The time window a folded query asks for, and the words that expressed it.

    With no time words the window is "from now on": an outing is in the future.
    """
    local = now.astimezone(PARIS)
    today = local.date()
    rules: list[tuple[str, tuple[datetime, datetime]]] = []

    def clamp(span: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
        return max(span[0], local), span[1]

    year = r"(?:\s+(\d{4}))?"
    month_names = "|".join(MONTHS)
    if m := re.search(rf"\b(?:le\s+)?(\d{{1,2}}|1er)\s+({month_names}){year}\b", folded):
        day_n = 1 if m.group(1) == "1er" else int(m.group(1))
        month_n = MONTHS[m.group(2)]
        y = int(m.group(3)) if m.group(3) else _upcoming_year(local, month_n, day_n)
        rules.append((m.group(0), _day(date(y, month_n, day_n))))
    elif m := re.search(rf"\b(?:en\s+|au mois de\s+|mois de\s+)?({month_names}){year}\b", folded):
        month_n = MONTHS[m.group(1)]
        y = int(m.group(2)) if m.group(2) else _upcoming_year(local, month_n)
        rules.append((m.group(0), _month(y, month_n)))
    elif m := re.search(r"\bce soir\b|\bcette nuit\b|\bce soir la\b", folded):
        rules.append((m.group(0), clamp(_evening(today))))
    elif m := re.search(r"\bdemain soir\b", folded):
        rules.append((m.group(0), _evening(today + timedelta(days=1))))
    elif m := re.search(r"\bapres demain\b", folded):
        rules.append((m.group(0), _day(today + timedelta(days=2))))
    elif m := re.search(r"\bdemain\b", folded):
        rules.append((m.group(0), _day(today + timedelta(days=1))))
    elif m := re.search(r"\baujourd hui\b|\bcet apres midi\b", folded):
        rules.append((m.group(0), clamp(_day(today))))
    elif m := re.search(r"\b(ce|le) week ?end( prochain)?\b|\bweek ?end prochain\b", folded):
        saturday = _next_weekday(today, 5)
        if today.weekday() == 6:  # on Sunday, "ce week-end" is today
            saturday = today - timedelta(days=1)
        if "prochain" in m.group(0):
            saturday += timedelta(days=7)
        start, _ = _evening(saturday - timedelta(days=1))  # Friday evening counts
        rules.append((m.group(0), clamp((start, _at(saturday + timedelta(days=2), time.min)))))
    elif m := re.search(r"\bla semaine prochaine\b", folded):
        monday = today + timedelta(days=7 - today.weekday())
        rules.append(
            (m.group(0), (_at(monday, time.min), _at(monday + timedelta(days=7), time.min)))
        )
    elif m := re.search(r"\bcette semaine\b", folded):
        monday = today + timedelta(days=7 - today.weekday())
        rules.append((m.group(0), (local, _at(monday, time.min))))
    elif m := re.search(r"\bcet ete\b|\bl ete( prochain)?\b", folded):
        y = local.year if today <= date(local.year, 9, 22) else local.year + 1
        rules.append(
            (m.group(0), clamp((_at(date(y, 6, 21), time.min), _at(date(y, 9, 23), time.min))))
        )
    elif m := re.search(rf"\b({'|'.join(WEEKDAYS)})( soir)?\b", folded):
        day = _next_weekday(today, WEEKDAYS[m.group(1)])
        span = _evening(day) if m.group(2) else _day(day)
        rules.append((m.group(0), clamp(span)))
    elif m := re.search(r"\ben (\d{4})\b", folded):
        y = int(m.group(1))
        rules.append((m.group(0), (_at(date(y, 1, 1), time.min), _at(date(y + 1, 1, 1), time.min))))

    if not rules:
        return Window(start=local, end=None, label="à venir"), []
    words, (start, end) = rules[0]
    return Window(start=start, end=end, label=words), [words]


def parse_where(
    folded: str, cities: Iterable[str], location: tuple[float, float] | None, default_radius: float
) -> tuple[tuple[str, ...], Near | None, list[str], list[str]]:
    """Cities named after a place preposition, and 'près de moi' resolved against `location`.

    Returns (cities, near, matched words, notes). Longest city names win, so
    'Saint-Denis' is not read as 'Denis'.
    """
    found: list[str] = []
    matched: list[str] = []
    notes: list[str] = []
    remaining = folded
    for city in sorted({c for c in cities if len(fold(c)) >= 3}, key=lambda c: -len(fold(c))):
        key = fold(city)
        if m := re.search(rf"{_CITY_PREFIX}({re.escape(key)})\b", remaining):
            found.append(city)
            matched.append(m.group(1))
            remaining = remaining.replace(m.group(1), " ")
    near = None
    radius_m = _RADIUS.search(folded)
    if _NEAR_ME.search(folded) or (radius_m and not found):
        if location is None:
            notes.append("« près de moi » ignoré : la requête ne donne pas de position")
        else:
            radius = float(radius_m.group(1).replace(",", ".")) if radius_m else default_radius
            near = Near(lat=location[0], lon=location[1], radius_km=radius)
    for pattern in (_NEAR_ME, _RADIUS):
        matched.extend(m.group(0) for m in pattern.finditer(folded))
    return tuple(found), near, matched, notes


def parse_query(
    text: str,
    now: datetime,
    cities: Iterable[str] = (),
    location: tuple[float, float] | None = None,
    default_radius_km: float = 10.0,
) -> ParsedQuery:
    """Parse a French request into a time window, places and theme terms.

    >>> q = parse_query("Un concert de jazz à Paris en juin 2025 ?", now, cities=["Paris"])
    >>> q.window.label, q.cities, q.terms
    ('en juin 2025', ('Paris',), ('concert', 'jazz'))
    """
    folded = fold(text)
    window, time_words = parse_when(folded, now)
    found, near, place_words, notes = parse_where(folded, cities, location, default_radius_km)
    rest = folded
    for words in sorted(time_words + place_words, key=len, reverse=True):
        rest = rest.replace(words, " ")
    theme = tuple(
        dict.fromkeys(stem(w) for w in rest.split() if w not in STOPWORDS and not w.isdigit())
    )
    return ParsedQuery(
        text=text, now=now, window=window, cities=found, near=near, terms=theme, notes=tuple(notes)
    )
