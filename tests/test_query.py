"""The deterministic French parser: windows relative to `now`, places, theme words."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from retrieval.query import parse_query

pytestmark = pytest.mark.unit
PARIS = ZoneInfo("Europe/Paris")
# A Wednesday afternoon.
NOW = datetime(2025, 6, 4, 15, 30, tzinfo=PARIS)
CITIES = ["Paris", "Valence", "Romans-sur-Isère", "Saint-Denis", "Denis"]


def window(text: str, now: datetime = NOW) -> tuple[str, str | None]:
    w = parse_query(text, now, CITIES).window
    return w.start.isoformat(), w.end.isoformat() if w.end else None


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("concert ce soir", "2025-06-04T17:00:00+02:00", "2025-06-05T04:00:00+02:00"),
        ("théâtre demain", "2025-06-05T00:00:00+02:00", "2025-06-06T00:00:00+02:00"),
        ("demain soir", "2025-06-05T17:00:00+02:00", "2025-06-06T04:00:00+02:00"),
        ("ce week-end", "2025-06-06T17:00:00+02:00", "2025-06-09T00:00:00+02:00"),
        ("le week-end prochain", "2025-06-13T17:00:00+02:00", "2025-06-16T00:00:00+02:00"),
        ("la semaine prochaine", "2025-06-09T00:00:00+02:00", "2025-06-16T00:00:00+02:00"),
        ("en juin 2025", "2025-06-01T00:00:00+02:00", "2025-07-01T00:00:00+02:00"),
        ("en décembre", "2025-12-01T00:00:00+01:00", "2026-01-01T00:00:00+01:00"),
        ("en mars", "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"),
        ("le 3 mai", "2026-05-03T00:00:00+02:00", "2026-05-04T00:00:00+02:00"),
        ("le 14 juillet 2025", "2025-07-14T00:00:00+02:00", "2025-07-15T00:00:00+02:00"),
        ("samedi soir", "2025-06-07T17:00:00+02:00", "2025-06-08T04:00:00+02:00"),
        ("cet été", "2025-06-21T00:00:00+02:00", "2025-09-23T00:00:00+02:00"),
    ],
)
def test_time_words_resolve_against_now(text: str, start: str, end: str) -> None:
    assert window(text) == (start, end)


def test_tonight_starts_now_when_already_evening() -> None:
    late = datetime(2025, 6, 4, 21, 0, tzinfo=PARIS)
    assert window("ce soir", late)[0] == "2025-06-04T21:00:00+02:00"


def test_weekend_on_sunday_is_today() -> None:
    sunday = datetime(2025, 6, 8, 11, 0, tzinfo=PARIS)
    assert window("ce week-end", sunday) == (
        "2025-06-08T11:00:00+02:00",
        "2025-06-09T00:00:00+02:00",
    )


def test_no_time_words_means_from_now_on() -> None:
    parsed = parse_query("un concert de jazz", NOW, CITIES)
    assert parsed.window.start == NOW and parsed.window.end is None


def test_city_after_preposition_longest_first() -> None:
    assert parse_query("expo à Saint-Denis", NOW, CITIES).cities == ("Saint-Denis",)
    assert parse_query("concerts à Romans-sur-Isère", NOW, CITIES).cities == ("Romans-sur-Isère",)
    # a city name not introduced as a place is a theme word, not a filter
    assert parse_query("Paris", NOW, CITIES).cities == ("Paris",)
    assert parse_query("le festival valence jazz", NOW, CITIES).cities == ()


def test_near_me_needs_a_location() -> None:
    without = parse_query("que faire près de moi", NOW, CITIES)
    assert without.near is None and without.notes
    near = parse_query("que faire près de moi", NOW, CITIES, location=(48.85, 2.35))
    assert near.near is not None and near.near.radius_km == 10.0
    radius = parse_query("un concert à 3 km", NOW, CITIES, location=(48.85, 2.35))
    assert radius.near is not None and radius.near.radius_km == 3.0


def test_theme_terms_are_folded_stemmed_and_free_of_time_and_place() -> None:
    parsed = parse_query("Des concerts de Jazz à Paris en juin 2025 ?", NOW, CITIES)
    assert parsed.terms == ("concert", "jazz")
    assert parse_query("Des festivaux de rue", NOW, CITIES).terms == ("festival", "ru")


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("Un concert de jazz à Paris en juin 2025 ?", "concert jazz"),
        ("Visites guidées d'églises à Valence ce week-end", "visite guidée église"),
        ("Des CONCERTS de Jazz ?", "concert jazz"),
        ("Quelles expos voir ?", "exposition"),
        ("Des jeux de société", "jeux société"),
        ("Que faire ce soir près de moi ?", ""),
        ("Je m'intéresse à l'intelligence artificielle", "intelligence artificielle"),
    ],
)
def test_content_is_the_request_less_place_time_and_stopwords_as_written(
    text: str, content: str
) -> None:
    assert parse_query(text, NOW, CITIES, location=(48.85, 2.35)).content == content


@pytest.mark.parametrize(
    "second", ["ce soir à Paris, des concerts de jazz", "Quels concerts jazz ce soir à Paris ?"]
)
def test_two_wordings_with_the_same_parse_have_the_same_content(second: str) -> None:
    """What lets the dense side (PULS_DENSE_QUERY=content) and the answer cache treat them
    as one request."""
    first = parse_query("Un concert de jazz à Paris ce soir ?", NOW, CITIES)
    other = parse_query(second, NOW, CITIES)
    assert first.content == other.content == "concert jazz"
    assert (first.window, first.cities) == (other.window, other.cities)
