"""PostGIS (geography) and haversine give the same radius and the same ranking on real events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.mapping import shipped_mappings
from ingest.normalise import to_event
from retrieval.event_store import EventStore
from retrieval.geo import HaversineGeoIndex, PostGISGeoIndex, open_geo_index
from tests.conftest import DATA

pytestmark = pytest.mark.integration
LOUVRE = (48.8606, 2.3376)


def real_events() -> list:  # type: ignore[type-arg]
    mapping = next(m for m in shipped_mappings() if m.name == "openagenda-ods")
    rows = json.loads((DATA / "paris-2025-ods.json").read_text("utf-8"))["results"]
    events = []
    for row in rows:
        try:
            events.append(to_event(row, mapping, "ods"))
        except ValueError:
            continue
    return events


def test_postgis_and_haversine_agree(tmp_path: Path, postgres_url: str) -> None:
    events = real_events()
    uids = [e.uid for e in events]
    sqlite_store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    pg_store = EventStore(postgres_url)
    for store in (sqlite_store, pg_store):
        store.upsert(events)
    embedded = open_geo_index(sqlite_store)
    postgis = open_geo_index(pg_store)
    assert isinstance(embedded, HaversineGeoIndex) and isinstance(postgis, PostGISGeoIndex)

    stored = sqlite_store.get(uids)
    near_sphere = embedded.distances(*LOUVRE, stored, radius_km=3.0)
    near_spheroid = postgis.distances(*LOUVRE, stored, radius_km=3.0)
    assert len(near_sphere) > 20, "the slice should have events around the Louvre"
    assert set(near_sphere) == set(near_spheroid)
    # Same ranking: any two events more than 1 % apart are in the same order in both; only
    # near-ties (same venue or next door) may swap, since sphere and spheroid differ slightly.
    for a in near_sphere:
        for b in near_sphere:
            if near_sphere[a] < near_sphere[b] * 0.99 - 0.001:
                assert near_spheroid[a] < near_spheroid[b], (a, b)
    for uid, km in near_sphere.items():
        assert near_spheroid[uid] == pytest.approx(km, rel=0.005, abs=0.005)

    everywhere = postgis.distances(*LOUVRE, stored)
    assert len(everywhere) > len(near_spheroid)
    assert all(km > 3.0 for uid, km in everywhere.items() if uid not in near_spheroid)
    sqlite_store.close()
    pg_store.close()
