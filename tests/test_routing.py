"""The routing rule and the multi-turn slot carrying, on real parses of real phrasings."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from retrieval.query import ParsedQuery, parse_query
from serving.conversation import carried_slots, contextual_query
from serving.routing import Route, choose_route, constraint_kinds

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 10, tzinfo=ZoneInfo("Europe/Paris"))
CITIES = ["Paris", "Nantes", "Lyon"]
HERE = (48.86, 2.35)


def parse(text: str) -> ParsedQuery:
    return parse_query(text, NOW, cities=CITIES, location=HERE)


def route(text: str, turns: int = 1, has_large: bool = True) -> Route:
    return choose_route(parse(text), text, turns, has_large)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Du jazz à Paris en juin 2025 ?", Route("small", "lookup")),
        ("Que faire ce soir ?", Route("small", "lookup")),
        ("Où voir un concert à Lyon ?", Route("small", "lookup")),
        ("Un atelier pour enfants à Nantes demain ?", Route("large", "multi_constraint")),
        ("Plutôt du jazz ou du rock à Lyon ?", Route("large", "comparison")),
        ("Peux-tu comparer les deux expositions ?", Route("large", "comparison")),
        ("Lequel est le mieux pour un premier rendez-vous ?", Route("large", "comparison")),
    ],
)
def test_rule_picks_the_engine(text: str, expected: Route) -> None:
    assert route(text) == expected


def test_without_a_large_engine_everything_goes_small_and_says_why() -> None:
    assert route("Plutôt du jazz ou du rock à Lyon ?", has_large=False) == Route(
        "small", "no_large_model"
    )


def test_a_long_conversation_goes_large() -> None:
    assert route("Et du théâtre ?", turns=3) == Route("large", "long_conversation")
    assert route("Et du théâtre ?", turns=2) == Route("small", "lookup")


def test_constraint_kinds_are_read_from_the_parse() -> None:
    text = "Un atelier pour enfants à Nantes demain ?"
    assert constraint_kinds(parse(text), text) == ("place", "time", "theme", "audience")
    assert constraint_kinds(parse("Et du théâtre ?"), "Et du théâtre ?") == ("theme",)


def test_a_follow_up_inherits_place_and_time() -> None:
    turns = [parse("Du jazz à Paris en juin 2025 ?"), parse("Et du théâtre ?")]
    slots = carried_slots(turns)
    assert (slots.place, slots.time) == ("à Paris", "en juin 2025")
    query = contextual_query("Et du théâtre ?", turns)
    merged = parse(query)
    assert merged.cities == ("Paris",) and merged.window.label == "en juin 2025"
    assert merged.terms == parse("Et du théâtre ?").terms, "the theme stays the last turn's"


def test_the_last_turn_explicit_slots_win() -> None:
    turns = [parse("Du jazz à Paris en juin 2025 ?"), parse("Et à Lyon demain ?")]
    assert carried_slots(turns).words() == []
    turns = [parse("Du jazz à Paris en juin 2025 ?"), parse("Et à Lyon ?")]
    slots = carried_slots(turns)
    assert (slots.place, slots.time) == (None, "en juin 2025")


def test_the_most_recent_earlier_turn_wins() -> None:
    turns = [
        parse("Du jazz à Paris en juin 2025 ?"),
        parse("Et à Nantes ce week-end ?"),
        parse("Du théâtre ?"),
    ]
    assert carried_slots(turns).words() == ["à Nantes", "ce week end"]


def test_near_me_carries_as_a_radius() -> None:
    turns = [parse("Un concert à moins de 5 km ce soir"), parse("Et une expo ?")]
    merged = parse(contextual_query("Et une expo ?", turns))
    assert merged.near is not None and merged.near.radius_km == 5
    assert merged.window.label == "ce soir"


def test_a_single_turn_is_left_alone() -> None:
    assert contextual_query("Que faire ?", [parse("Que faire ?")]) == "Que faire ?"
    assert carried_slots([]).words() == []
