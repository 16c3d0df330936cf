"""Turn one source row into an `Event`, or say precisely why it cannot be one."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping as AnyMapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from selectolax.lexbor import LexborHTMLParser

from ingest.geocode import Gazetteer
from ingest.mapping import DETAIL_FIELDS, FieldRule, Mapping
from retrieval.records import Event

PARIS = ZoneInfo("Europe/Paris")
DESCRIPTION_MAX_CHARS = 1000
LONG_DESCRIPTION_MAX_CHARS = 4000  # indexed for BM25 only; the passage stays short


class RowError(ValueError):
    """A row that cannot become an event; `rule` names the failed check for the report."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def html_to_text(value: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    if "<" not in value:
        return " ".join(value.split())
    return " ".join(LexborHTMLParser(value).text(separator=" ").split())


def parse_list(value: Any) -> tuple[str, ...]:
    """Keywords from a list, a JSON or Python list literal, or a `;`/`,`-separated string."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.strip().startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            items = ast.literal_eval(value)
    elif isinstance(value, str):
        items = value.split(";" if ";" in value else ",")
    else:
        items = []
    return tuple(dict.fromkeys(s for s in (" ".join(str(i).split()) for i in items) if s))


def parse_datetime(value: Any) -> datetime:
    """ISO 8601; a naive time is read as Paris local time."""
    parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=PARIS)


def parse_coordinates(value: Any) -> tuple[float, float]:
    """(lat, lon) from {"lat","lon"}, its Python-literal string, or "lat, lon"."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = ast.literal_eval(text)
        else:
            lat, lon = (float(p) for p in text.split(","))
            return lat, lon
    if isinstance(value, AnyMapping):
        return float(value["lat"]), float(value["lon"])
    raise ValueError(f"unrecognised coordinates {value!r}")


def _first(row: dict[str, Any], rule: FieldRule) -> Any:
    for column in rule.columns:
        value = row.get(column)
        if value not in (None, "", [], "[]"):
            return value
    return None


def _field(row: dict[str, Any], mapping: Mapping, name: str) -> Any:
    rule = mapping.fields.get(name)
    if rule is None:
        return None
    value = _first(row, rule)
    if value is None:
        return None
    if rule.parse == "raw":
        return value
    try:
        if rule.parse == "html":
            return html_to_text(str(value))
        if rule.parse == "list":
            return parse_list(value)
        if rule.parse == "datetime":
            return parse_datetime(value)
        if rule.parse == "float":
            return float(value)
        if rule.parse == "coordinates":
            return parse_coordinates(value)
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        rule_name = "unparsable_date" if rule.parse == "datetime" else f"unparsable_{name}"
        raise RowError(rule_name, f"{name}: cannot parse {str(value)[:60]!r}: {exc}") from exc
    return " ".join(str(value).split())


def _in_france(lat: float, lon: float) -> bool:
    """Metropolitan France and Corsica, generously boxed."""
    return 41.0 <= lat <= 51.6 and -5.8 <= lon <= 10.0


def detail_fields(row: dict[str, Any], mapping: Mapping) -> dict[str, Any]:
    """The detail fields (see `ingest.details`) this mapping finds in `row`, unparsed."""
    found = {name: _field(row, mapping, name) for name in DETAIL_FIELDS & mapping.fields.keys()}
    return {name: value for name, value in found.items() if value is not None}


def to_event(
    row: dict[str, Any], mapping: Mapping, source: str, gazetteer: Gazetteer | None = None
) -> Event:
    """Normalise one row. Raises `RowError` naming the rule it breaks.

    Without coordinates, the `gazetteer` (when given) places the event at its city's centroid;
    `extra["geo_precision"]` says which (`exact`, `city`, `none`).
    """
    if "__invalid__" in row:
        raise RowError("not_an_object", "row is not a JSON object")
    uid = _field(row, mapping, "uid")
    if not uid:
        raise RowError("no_uid", "no uid")
    title = _field(row, mapping, "title")
    if not title:
        raise RowError("no_title", "no title")
    start = _field(row, mapping, "start")
    if start is None:
        raise RowError("no_date", "no start date")
    end = _field(row, mapping, "end") or start
    if end < start:
        raise RowError(
            "end_before_start", f"ends {end.isoformat()} before it starts {start.isoformat()}"
        )
    lat, lon = _field(row, mapping, "coordinates") or (
        _field(row, mapping, "lat"),
        _field(row, mapping, "lon"),
    )
    warnings: list[str] = []
    if lat is not None and lon is not None and not _in_france(lat, lon):
        warnings.append("coordinates_outside_france")  # kept, but not placed on the map
        lat = lon = None
    precision = "exact"
    city = _field(row, mapping, "city") or ""
    postal_code = _field(row, mapping, "postal_code") or ""
    if (lat is None or lon is None) and gazetteer is not None and city:
        fix = gazetteer.locate(city, postal_code)
        lat, lon, precision = fix.lat, fix.lon, fix.precision
        warnings.append("geocoded_city" if fix.lat is not None else "geocoding_failed")
    if lat is None or lon is None:
        precision = "none"
        warnings.append("no_coordinates")
    return Event(
        uid=str(uid),
        source=source,
        title=title,
        start=start,
        end=end,
        description=(_field(row, mapping, "description") or "")[:DESCRIPTION_MAX_CHARS],
        long_description=(_field(row, mapping, "long_description") or "")[
            :LONG_DESCRIPTION_MAX_CHARS
        ],
        keywords=_field(row, mapping, "keywords") or (),
        venue=_field(row, mapping, "venue") or "",
        address=_field(row, mapping, "address") or "",
        city=city,
        postal_code=postal_code,
        lat=lat if lon is not None else None,
        lon=lon if lat is not None else None,
        url=_field(row, mapping, "url") or "",
        updated_at=_field(row, mapping, "updated_at"),
        extra={"warnings": warnings, "geo_precision": precision},
    )
