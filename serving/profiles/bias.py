"""How a profile nudges the ranking: a small bonus after retrieval, never a filter.

Each retrieved event gets `weight × (½ · city match + ½ · theme match)`, where the city
match is 1 when the event is in one of the preferred cities and the theme match is 1 when
its title or keywords contain a preferred theme or accessibility word. The bonus is at most
`weight` (`PULS_PROFILE_WEIGHT`, 0.1 by default; retrieval scores are weighted sums of
features in [0, 1], see `retrieval/search.py`), so it reorders close candidates and cannot
lift an off-topic event over a clearly better one. Retrieval itself is untouched.
"""

from __future__ import annotations

from dataclasses import replace

from retrieval.rerank import ScoredEvent
from retrieval.search import SearchResult
from retrieval.text import fold, terms
from serving.profiles.store import Profile


def profile_bonus(event: ScoredEvent, profile: Profile, weight: float) -> float:
    cities = {fold(c) for c in profile.cities}
    wanted = set(terms(" ".join(profile.themes + profile.accessibility)))
    words = set(terms(f"{event.event.title} {' '.join(event.event.keywords)}"))
    city = 1.0 if fold(event.event.city) in cities else 0.0
    theme = 1.0 if wanted & words else 0.0
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
