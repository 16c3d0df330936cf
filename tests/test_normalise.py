"""Rows from each real layout become events; broken rows say which rule they break."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.mapping import MappingError, detect_mapping, load_mapping, shipped_mappings
from ingest.normalise import RowError, html_to_text, parse_coordinates, parse_list, to_event
from ingest.readers import SourceError, read_source
from tests.conftest import DATA

pytestmark = pytest.mark.unit
MAPPINGS = {m.name: m for m in shipped_mappings()}


def first_row(name: str) -> tuple[str, dict]:
    source = read_source(DATA / name)
    return detect_mapping(source.columns, shipped_mappings()).name, source.rows[0][1]


@pytest.mark.parametrize(
    ("name", "mapping"),
    [
        ("paris-2025-ods.json", "openagenda-ods"),
        ("paris-2026-ods.json", "openagenda-ods"),
        ("grand-est-2026.csv", "openagenda-ods"),
        ("drome-2025.csv", "drome-csv"),
        ("paris-2025-clean.csv", "paris-clean-csv"),
    ],
)
def test_each_bundled_layout_is_recognised(name: str, mapping: str) -> None:
    detected, row = first_row(name)
    assert detected == mapping
    event = to_event(row, MAPPINGS[mapping], source=name)
    assert event.uid and event.title
    assert event.start.tzinfo is not None and event.end >= event.start


def test_ods_json_row_is_fully_normalised() -> None:
    _, row = first_row("paris-2025-ods.json")
    event = to_event(row, MAPPINGS["openagenda-ods"], "ods")
    assert event.uid == "12616484"
    assert event.keywords == ("planetarium", "étoiles", "galaxie", "live")
    assert (event.lat, event.lon) == (48.841007, 2.279657)
    assert event.city == "Paris" and event.postal_code == "75015"
    assert event.url.startswith("https://openagenda.com/")
    assert event.updated_at is not None


def test_python_literal_cells_are_parsed() -> None:
    _, row = first_row("paris-2025-clean.csv")
    event = to_event(row, MAPPINGS["paris-clean-csv"], "clean")
    assert (event.lat, event.lon) == (48.869568, 2.303662)
    assert "La semaine du Tourisme" in event.keywords


def test_personal_data_never_reaches_the_event() -> None:
    _, row = first_row("paris-2025-ods.json")
    row = {**row, "contributor_email": "someone@example.org", "contributor_contactname": "Jane Doe"}
    event = to_event(row, MAPPINGS["openagenda-ods"], "ods")
    assert "someone@example.org" not in json.dumps(event.__dict__, default=str)
    assert "Jane Doe" not in event.passage()


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"title_fr": ""}, "no_title"),
        ({"uid": None}, "no_uid"),
        ({"firstdate_begin": None}, "no_date"),
        ({"firstdate_begin": "le 3 mai"}, "unparsable_date"),
        (
            {
                "firstdate_begin": "2025-06-02T10:00:00+00:00",
                "lastdate_end": "2025-06-01T10:00:00+00:00",
            },
            "end_before_start",
        ),
    ],
)
def test_broken_rows_name_their_rule(change: dict, rule: str) -> None:
    _, row = first_row("paris-2025-ods.json")
    with pytest.raises(RowError) as excinfo:
        to_event({**row, **change}, MAPPINGS["openagenda-ods"], "ods")
    assert excinfo.value.rule == rule


def test_coordinates_outside_france_are_dropped_with_a_warning() -> None:
    _, row = first_row("paris-2025-ods.json")
    event = to_event(
        {**row, "location_coordinates": {"lat": 40.7, "lon": -74.0}},
        MAPPINGS["openagenda-ods"],
        "x",
    )
    assert event.lat is None and "coordinates_outside_france" in event.extra["warnings"]


def test_value_parsers() -> None:
    assert html_to_text("<p>Un <b>concert</b></p><p>gratuit</p>") == "Un concert gratuit"
    assert parse_list("['jazz', 'blues']") == ("jazz", "blues")
    assert parse_list('["jazz", "jazz", " blues "]') == ("jazz", "blues")
    assert parse_list("jazz;blues") == ("jazz", "blues")
    assert parse_coordinates("{'lon': 2.3, 'lat': 48.8}") == (48.8, 2.3)
    assert parse_coordinates("48.8, 2.3") == (48.8, 2.3)


def test_unreadable_files_say_which_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SourceError, match="broken.json"):
        read_source(bad)
    spreadsheet = tmp_path / "events.xlsx"
    spreadsheet.touch()
    with pytest.raises(SourceError, match="unsupported"):
        read_source(spreadsheet)
    with pytest.raises(SourceError, match="no such file"):
        read_source(tmp_path / "missing.csv")


def test_unknown_layout_and_bad_mapping_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="--mapping"):
        detect_mapping(["foo", "bar"], shipped_mappings())
    bad = tmp_path / "m.yaml"
    bad.write_text("name: x\nfields:\n  uid: id\n  title: t\n", encoding="utf-8")
    with pytest.raises(MappingError, match="start"):
        load_mapping(bad)
