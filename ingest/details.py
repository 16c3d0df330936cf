"""The OpenAgenda facts beyond the searchable core: sessions, status, audience, access.

They come as JSON-in-a-cell in the ODS exports (`timings`, `status`, `attendancemode`,
`registration`) and as objects from the API; both shapes are read here. Values follow
OpenAgenda's own codes, documented at https://developers.openagenda.com (event schema):
status 1 scheduled … 6 cancelled, attendance 1 on site / 2 online / 3 mixed, accessibility
hi/ii/mi/pi/vi. Cancelled, postponed and full events are kept and marked, never dropped:
"complet" is an answer too.

Registration keeps links only: an e-mail address or phone number there is often a person's,
and personal data is never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest.normalise import RowError, parse_datetime

STATUS = {
    1: "scheduled", 2: "rescheduled", 3: "moved_online", 4: "postponed", 5: "full", 6: "cancelled"
}  # fmt: skip
ATTENDANCE = {1: "offline", 2: "online", 3: "mixed"}
ACCESSIBILITY = {
    "hi": "hearing", "ii": "intellectual", "mi": "motor", "pi": "psychic", "vi": "visual"
}  # fmt: skip


@dataclass(frozen=True)
class Occurrence:
    begin: datetime
    end: datetime


@dataclass(frozen=True)
class EventDetails:
    """What an answer may add to the core facts; defaults mean "the source does not say"."""

    occurrences: tuple[Occurrence, ...] = ()
    status: str = "scheduled"
    attendance_mode: str = "offline"
    online_url: str = ""
    age_min: int | None = None
    age_max: int | None = None
    accessibility: tuple[str, ...] = ()
    registration_links: tuple[str, ...] = ()


def _decoded(value: Any) -> Any:
    """A JSON cell decoded; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _code(value: Any, names: dict[int, str], default: str) -> str:
    """An OpenAgenda coded value: `{"id": 6, ...}`, 6, or "6"."""
    value = _decoded(value)
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return names.get(int(value), default) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def parse_occurrences(value: Any) -> tuple[Occurrence, ...]:
    """Sessions from `timings` ([{"begin", "end"}], JSON text or list), sorted, deduplicated."""
    items = _decoded(value)
    if items in (None, ""):
        return ()
    if not isinstance(items, list):
        raise RowError("unparsable_timings", f"timings: expected a list, got {str(value)[:60]!r}")
    try:
        found = {
            Occurrence(parse_datetime(i["begin"]), parse_datetime(i.get("end") or i["begin"]))
            for i in items
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise RowError("unparsable_timings", f"timings: {exc}") from exc
    return tuple(sorted(found, key=lambda o: (o.begin, o.end)))


def _age(value: Any) -> int | None:
    try:
        age = int(float(value))
    except (TypeError, ValueError):
        return None
    return age if 0 <= age <= 120 else None


def parse_accessibility(value: Any) -> tuple[str, ...]:
    """Codes from "hi;vi", ["mi"], or the API's {"hi": true, "mi": false}."""
    value = _decoded(value)
    if isinstance(value, dict):
        codes = [k for k, on in value.items() if on]
    elif isinstance(value, list):
        codes = [str(v) for v in value]
    elif isinstance(value, str):
        codes = value.replace(",", ";").split(";")
    else:
        codes = []
    return tuple(sorted({ACCESSIBILITY[c.strip()] for c in codes if c.strip() in ACCESSIBILITY}))


def parse_registration(value: Any) -> tuple[str, ...]:
    """The registration links (http/https) only."""
    value = _decoded(value)
    items = value if isinstance(value, list) else [value]
    links = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("value") if item.get("type", "link") == "link" else None
        if isinstance(item, str) and item.strip().lower().startswith(("http://", "https://")):
            links.append(item.strip())
    return tuple(dict.fromkeys(links))


def event_details(fields: dict[str, Any]) -> EventDetails:
    """Details from the detail fields a mapping picked (`ingest.mapping.DETAIL_FIELDS`)."""
    online_url = str(fields.get("online_url") or "").strip()
    attendance = _code(fields.get("attendance_mode"), ATTENDANCE, "offline")
    if online_url and attendance == "offline" and "attendance_mode" not in fields:
        attendance = "mixed"  # a link but no declared mode: do not claim on-site only
    age_min, age_max = _age(fields.get("age_min")), _age(fields.get("age_max"))
    if age_min is not None and age_max is not None and age_max < age_min:
        age_min, age_max = age_max, age_min
    return EventDetails(
        occurrences=parse_occurrences(fields.get("timings")),
        status=_code(fields.get("status"), STATUS, "scheduled"),
        attendance_mode=attendance,
        online_url=online_url,
        age_min=age_min,
        age_max=age_max,
        accessibility=parse_accessibility(fields.get("accessibility")),
        registration_links=parse_registration(fields.get("registration")),
    )
