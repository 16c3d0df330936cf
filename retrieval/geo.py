"""Distances from a point to events: PostGIS on PostgreSQL, haversine elsewhere.

Both implementations answer the same question — the distance in km from (lat, lon) to
each given event that has coordinates, optionally only those within a radius — so the
ranking is the same whichever database holds the events (tests/test_geo.py checks it).
PostGIS computes on the WGS84 spheroid (`geography`), haversine on a sphere: they differ
by well under 0.5 %, far below what separates two venues in a ranking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import Engine, bindparam, text

from retrieval.event_store import EventRow, EventStore
from retrieval.records import Event

EARTH_RADIUS_KM = 6371.0088


class GeoIndex(Protocol):
    """Distances to events, in kilometres."""

    def distances(
        self, lat: float, lon: float, events: Mapping[str, Event], radius_km: float | None = None
    ) -> dict[str, float]:
        """uid → km for the `events` (by uid, as `EventStore.get` returns them) that have
        coordinates, within `radius_km` if given. The search has read the candidates
        already; reading them again cost a store query per search."""
        ...


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


class HaversineGeoIndex:
    """The embedded profile: the events' own coordinates, distance in Python."""

    def distances(
        self, lat: float, lon: float, events: Mapping[str, Event], radius_km: float | None = None
    ) -> dict[str, float]:
        found = {}
        for uid, event in events.items():
            if event.lat is None or event.lon is None:
                continue
            km = haversine_km(lat, lon, event.lat, event.lon)
            if radius_km is None or km <= radius_km:
                found[uid] = km
        return found


_POINT = "geography(ST_SetSRID(ST_MakePoint(lon, lat), 4326))"
_ORIGIN = "geography(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
_TABLE = EventRow.__tablename__
_METERS = "CAST(:meters AS double precision)"
_DISTANCES = text(
    f"SELECT uid, ST_Distance({_POINT}, {_ORIGIN}) / 1000.0 AS km FROM {_TABLE} "
    "WHERE uid IN :uids AND lat IS NOT NULL AND lon IS NOT NULL "
    f"AND ({_METERS} IS NULL OR ST_DWithin({_POINT}, {_ORIGIN}, {_METERS}))"
).bindparams(bindparam("uids", expanding=True))


class PostGISGeoIndex:
    """PostgreSQL: `ST_DWithin` / `ST_Distance` on geography, with a GiST expression index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
            conn.execute(
                text(f"CREATE INDEX IF NOT EXISTS geog_idx ON {_TABLE} USING GIST (({_POINT}))")
            )

    def distances(
        self, lat: float, lon: float, events: Mapping[str, Event], radius_km: float | None = None
    ) -> dict[str, float]:
        if not events:
            return {}
        meters = None if radius_km is None else radius_km * 1000.0
        params = {"lat": lat, "lon": lon, "uids": list(events), "meters": meters}
        with self.engine.connect() as conn:
            return {uid: float(km) for uid, km in conn.execute(_DISTANCES, params)}


def open_geo_index(events: EventStore) -> GeoIndex:
    """PostGIS when the event store is PostgreSQL, haversine otherwise."""
    if events.engine.dialect.name == "postgresql":
        return PostGISGeoIndex(events.engine)
    return HaversineGeoIndex()
