"""Which engine answers: a small deterministic rule over the parsed request.

The rule, first match wins:

1. no large engine configured            → small, reason `no_large_model`
2. a comparison ("ou", "plutôt", "comparer", "lequel", "versus", "entre ... et")
                                         → large, reason `comparison`
3. all four constraint kinds present: place, time, theme and audience
   ("un atelier pour enfants à Nantes demain")
                                         → large, reason `multi_constraint`
4. a long conversation (>= 3 user turns) → large, reason `long_conversation`
5. otherwise (a lookup: "du jazz à Paris en juin")
                                         → small, reason `lookup`

A spent daily budget overrides all of it: small model, reason `budget` (see `serving.budget`).
"ou" is matched on the raw text, so "où" (where) is not a comparison; an unaccented
"ou aller ce soir" is, and goes to the large model: the cost of a false positive is a
slower answer, not a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from retrieval.query import ParsedQuery

SMALL: Literal["small"] = "small"
LARGE: Literal["large"] = "large"
LONG_CONVERSATION_TURNS = 3
MULTI_CONSTRAINT_KINDS = 4

_COMPARISON = re.compile(
    r"\b(ou|plutôt|plutot|compar\w*|versus|vs|lequel|laquelle|lesquels|lesquelles|"
    r"mieux|différence|difference)\b|\bentre\b.+\bet\b",
    re.IGNORECASE,
)
_AUDIENCE = re.compile(
    r"\b(enfants?|famille|familial\w*|ados?|adolescents?|jeunes?|jeunesse|seniors?|"
    r"étudiants?|etudiants?|bébés?|bebes?|tout-petits|scolaires?|kids?|parents?)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    """The engine chosen for one answer and the rule that chose it."""

    model: Literal["small", "large"]
    reason: str


def constraint_kinds(parsed: ParsedQuery, text: str) -> tuple[str, ...]:
    """Which of place, time, theme and audience the request constrains."""
    kinds = []
    if parsed.cities or parsed.areas or parsed.departments or parsed.near:
        kinds.append("place")
    if parsed.window.end is not None:
        kinds.append("time")
    if parsed.terms:
        kinds.append("theme")
    if _AUDIENCE.search(text):
        kinds.append("audience")
    return tuple(kinds)


def choose_route(parsed: ParsedQuery, text: str, user_turns: int, has_large: bool) -> Route:
    """Pick the engine for a request (rule in the module docstring).

    >>> choose_route(parse_query("Du jazz à Paris en juin 2025", now, ["Paris"]), ..., 1, True)
    Route(model='small', reason='lookup')
    """
    if not has_large:
        return Route(SMALL, "no_large_model")
    if _COMPARISON.search(text):
        return Route(LARGE, "comparison")
    if len(constraint_kinds(parsed, text)) >= MULTI_CONSTRAINT_KINDS:
        return Route(LARGE, "multi_constraint")
    if user_turns >= LONG_CONVERSATION_TURNS:
        return Route(LARGE, "long_conversation")
    return Route(SMALL, "lookup")


def degraded_route() -> Route:
    """A spent daily budget: the small model, whatever the request."""
    return Route(SMALL, "budget")
