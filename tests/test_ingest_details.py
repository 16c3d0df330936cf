"""Normalisation beyond the core: details, offline geocoding, personal data, near-duplicates."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.details import event_details, parse_accessibility, parse_registration
from ingest.geocode import french_gazetteer
from ingest.mapping import shipped_mappings
from ingest.normalise import detail_fields, to_event
from ingest.pipeline import (
    IngestReport,
    Staged,
    _Reader,
    link_near_duplicates,
    near_duplicate_key,
)
from tests.conftest import DATA

pytestmark = pytest.mark.unit
PARIS = ZoneInfo("Europe/Paris")
ODS = next(m for m in shipped_mappings() if m.name == "openagenda-ods")


@pytest.fixture(scope="module")
def ods_records() -> list[dict]:
    return json.loads((DATA / "paris-2026-ods.json").read_text("utf-8"))


def test_real_ods_row_gives_sessions_status_and_access(ods_records: list[dict]) -> None:
    row = next(r for r in ods_records if r["timings"] and r["timings"].count("begin") > 2)
    details = event_details(detail_fields(row, ODS))
    timings = json.loads(row["timings"])
    assert len(details.occurrences) == len({(t["begin"], t["end"]) for t in timings})
    assert details.occurrences[0].begin == min(datetime.fromisoformat(t["begin"]) for t in timings)
    full = next(r for r in ods_records if '"id": 5' in (r["status"] or ""))
    assert event_details(detail_fields(full, ODS)).status == "full"


def test_codes_links_and_ages() -> None:
    assert parse_accessibility("hi;vi") == ("hearing", "visual")
    assert parse_accessibility({"mi": True, "vi": False}) == ("motor",)
    registration = '[{"type": "email", "value": "jean@exemple.fr"}, {"type": "link", "value": "https://billetterie.example/a"}]'  # noqa: E501
    assert parse_registration(registration) == ("https://billetterie.example/a",)
    details = event_details({"age_min": "12", "age_max": "7", "status": '{"id": 6}'})
    assert (details.age_min, details.age_max, details.status) == (7, 12, "cancelled")
    online = event_details({"attendance_mode": {"id": 2}, "online_url": "https://live.example"})
    assert online.attendance_mode == "online"


def test_gazetteer_places_a_city_and_tells_homonyms_apart() -> None:
    gazetteer = french_gazetteer()
    drome, tarn = gazetteer.locate("Valence", "26000"), gazetteer.locate("Valence", "82400")
    assert drome.precision == tarn.precision == "city"
    assert drome.lat is not None and 44.8 < drome.lat < 45.0 and 4.8 < (drome.lon or 0) < 5.0
    assert tarn.lat is not None and 43.9 < tarn.lat < 44.2
    assert gazetteer.locate("Chalons en Champagne", "51000").precision == "city"
    assert gazetteer.locate("Nulle-Part-sur-Rien", "51000").precision == "none"


def test_grand_est_rows_without_coordinates_are_geocoded() -> None:
    report = IngestReport()
    reader = _Reader(report, french_gazetteer())
    from ingest.readers import read_source

    source = read_source(DATA / "grand-est-2026.csv")
    reader.accept_rows("grand-est-2026.csv", source.rows[:200], ODS)
    precisions = [s.event.extra["geo_precision"] for s in reader.staged.values()]
    assert precisions.count("city") > 0.8 * len(precisions)
    placed = [s.event for s in reader.staged.values() if s.event.lat is not None]
    assert all(47.4 < e.lat < 50.2 and 3.3 < e.lon < 8.3 for e in placed if e.lat and e.lon)


def test_personal_data_is_dropped_before_anything_keeps_it(ods_records: list[dict]) -> None:
    row = {**ods_records[0], "contributor_email": "marie.dupont@exemple.fr"}
    row["contributor_contactname"] = "Marie Dupont"
    reader = _Reader(IngestReport(), None)
    reader.accept_rows("x.json", [(1, row)], ODS)
    (number, _hash, payload) = reader.raw["x.json"][0]
    assert number == 1 and not any(k.startswith("contributor_") for k in payload)
    assert "marie" not in json.dumps([payload, repr(reader.staged)], default=str).lower()


def test_near_duplicates_link_to_the_smallest_uid_whatever_the_order(
    ods_records: list[dict],
) -> None:
    base = ods_records[0]
    copy = {**base, "uid": "00000001", "title_fr": base["title_fr"].upper() + " !"}
    linked = []
    for rows in ([base, copy], [copy, base]):
        reader = _Reader(IngestReport(), None)
        reader.accept_rows("x.json", list(enumerate(rows, 1)), ODS)
        linked.append(link_near_duplicates(reader.staged)[0])
    for result in linked:
        assert result["00000001"].duplicate_of is None
        assert result[base["uid"]].duplicate_of == "00000001"


def test_near_duplicates_compete_with_events_stored_by_earlier_runs(
    ods_records: list[dict],
) -> None:
    base = ods_records[0]
    reader = _Reader(IngestReport(), None)
    reader.accept_rows("x.json", [(1, base)], ODS)
    event = reader.staged[base["uid"]].event
    key = near_duplicate_key(event.title.upper(), event.venue, event.address, event.city,
                             event.start.astimezone(ZoneInfo("UTC")))  # fmt: skip
    # a stored event with a smaller uid wins: the staged one is not indexed
    linked, losers = link_near_duplicates(reader.staged, {"00000001": key})
    assert linked[base["uid"]].duplicate_of == "00000001" and losers == {}
    # a stored event with a larger uid loses: it must leave the index
    linked, losers = link_near_duplicates(reader.staged, {"zzz": key, base["uid"]: key})
    assert linked[base["uid"]].duplicate_of is None and losers == {"zzz": base["uid"]}


def test_to_event_without_gazetteer_keeps_no_coordinates() -> None:
    row = {"uid": "1", "title_fr": "Bal", "firstdate_begin": "2026-07-14T21:00:00+02:00",
           "location_city": "Valence", "location_postalcode": "26000"}  # fmt: skip
    event = to_event(row, ODS, "x.json")
    assert (event.lat, event.extra["geo_precision"]) == (None, "none")
    located = to_event(row, ODS, "x.json", french_gazetteer())
    assert located.extra["geo_precision"] == "city" and located.lat is not None
    assert isinstance(Staged(located, event_details({})).details.status, str)
