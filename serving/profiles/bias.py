"""How a profile nudges the ranking: a small bonus after retrieval, never a filter.

Each retrieved event gets `weight × (½ · city match + ½ · theme match)`, where the city
match is 1 when the event is in one of the preferred cities and the theme match is 1 when
its title or keywords contain a preferred theme or accessibility word. What the user liked
(the profile's notes: liked events' cities and first keywords) counts half: a city match of
½ for a liked event's city, a theme match of ½ for one of its keywords, when the chosen
preferences do not already match. The bonus is at most `weight` (`PULS_PROFILE_WEIGHT`, 0.1
by default; retrieval scores are weighted sums of features in [0, 1], see
`retrieval/search.py`), so it reorders close candidates and cannot lift an off-topic event
over a clearly better one. Retrieval itself is untouched.
"""

from __future__ import annotations

from dataclasses import replace

from retrieval.rerank import ScoredEvent
from retrieval.search import SearchResult
from retrieval.text import fold, terms
from serving.profiles.store import Profile

LIKED = 0.5  # a match on what the user liked, relative to one on what they chose


def _match(value: set[str], chosen: set[str], liked: set[str]) -> float:
    return 1.0 if value & chosen else LIKED if value & liked else 0.0


def profile_bonus(event: ScoredEvent, profile: Profile, weight: float) -> float:
    cities = {fold(c) for c in profile.cities}
    liked_cities = {fold(n.city) for n in profile.notes if n.city}
    wanted = set(terms(" ".join(profile.themes + profile.accessibility)))
    liked = set(terms(" ".join(t for n in profile.notes for t in n.themes)))
    words = set(terms(f"{event.event.title} {' '.join(event.event.keywords)}"))
    city = _match({fold(event.event.city)}, cities, liked_cities)
    theme = _match(words, wanted, liked)
    return weight * (0.5 * city + 0.5 * theme)


def biased(result: SearchResult, profile: Profile | None, weight: float) -> SearchResult:
    """The same events, reordered by score + profile bonus (stable for equal totals)."""
    if profile is None or weight <= 0 or not result.events:
        return result
    rescored = [
        replace(s, score=s.score + profile_bonus(s, profile, weight)) for s in result.events
    ]
    rescored.sort(key=lambda s: -s.score)
    return replace(result, events=rescored)
