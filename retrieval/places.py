"""French administrative places, offline: departments and regions from ISO 3166-2:FR (pycountry).

Used on both sides: ingest-time events get a department code (from a postal code), and
queries naming a department or a region ("dans la Drôme", "dans le Grand Est") become a
filter on those codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import pycountry

from retrieval.text import fold

_POSTAL = re.compile(r"\b(\d{5})\b")
_OVERSEAS_PREFIX = "97"


@dataclass(frozen=True)
class Area:
    """A named area and the department codes it covers."""

    name: str
    departments: tuple[str, ...]


def _department_code(subdivision_code: str) -> str:
    """'FR-26' → '26', 'FR-75C' (Paris) → '75', 'FR-2A' → '2A'."""
    code = subdivision_code.removeprefix("FR-")
    return "75" if code == "75C" else code


@cache
def areas() -> dict[str, Area]:
    """Folded name → area, for every department and region (with common short names)."""
    subdivisions = list(pycountry.subdivisions.get(country_code="FR") or [])
    found: dict[str, Area] = {}
    by_region: dict[str, list[str]] = {}
    for sub in subdivisions:
        if "department" in sub.type.lower() or sub.code == "FR-75C":
            code = _department_code(sub.code)
            found[fold(sub.name)] = Area(sub.name, (code,))
            if sub.parent_code:
                by_region.setdefault(sub.parent_code, []).append(code)
    for sub in subdivisions:
        if sub.code in by_region:
            found[fold(sub.name)] = Area(sub.name, tuple(sorted(by_region[sub.code])))
    # Alsace's departments hang under the European collectivity, not the region, in ISO 3166-2.
    grand_est = found.get("grand est")
    if grand_est is not None and "67" not in grand_est.departments:
        alsace = {*grand_est.departments, "67", "68"}
        found["grand est"] = Area(grand_est.name, tuple(sorted(alsace)))
    return found


def department_of(postal_code: str, address: str = "") -> str:
    """The department code of a French postal code (or the first one in an address), or ''."""
    match = _POSTAL.search(postal_code) or _POSTAL.search(address)
    if match is None:
        return ""
    code = match.group(1)
    if code.startswith(_OVERSEAS_PREFIX):
        return code[:3]
    if code.startswith("20"):  # Corsica: 200xx-201xx south, 202xx-206xx north
        return "2A" if code < "20200" else "2B"
    return code[:2]
