"""Declarative column mappings (YAML) from a source layout to `Event` fields.

A mapping names, for each event field, the source columns to try in order (first non-empty
wins) and how to parse the value. Shipped mappings live in `ingest/mappings/`; a user brings
their own with `puls ingest --mapping FILE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

MAPPINGS_DIR = Path(__file__).parent / "mappings"
PARSERS = frozenset({"text", "html", "list", "datetime", "float", "coordinates", "raw"})
EVENT_FIELDS = frozenset(
    {"uid", "title", "description", "long_description", "keywords", "start", "end", "venue",
     "address", "city", "postal_code", "lat", "lon", "coordinates", "url", "updated_at"}
)  # fmt: skip
DETAIL_FIELDS = frozenset(
    {"timings", "status", "attendance_mode", "online_url", "age_min", "age_max", "accessibility",
     "registration"}
)  # fmt: skip
"""Read as they are (`parse: raw` by default) and interpreted by `ingest.details`."""
REQUIRED_FIELDS = ("uid", "title", "start")


class MappingError(ValueError):
    """A mapping file is malformed, or no mapping fits a file's columns."""


@dataclass(frozen=True)
class FieldRule:
    columns: tuple[str, ...]
    parse: str = "text"


@dataclass(frozen=True)
class Mapping:
    name: str
    detect: frozenset[str]
    fields: dict[str, FieldRule]

    def fits(self, columns: Iterable[str]) -> bool:
        return self.detect <= set(columns)


def _rule(field: str, spec: object, origin: str) -> FieldRule:
    default = "raw" if field in DETAIL_FIELDS else "text"
    if isinstance(spec, str):
        return FieldRule(columns=(spec,), parse=default)
    if isinstance(spec, dict) and isinstance(spec.get("columns"), list):
        parse = spec.get("parse", default)
        if parse not in PARSERS:
            raise MappingError(f"{origin}: field {field!r}: unknown parse {parse!r}")
        return FieldRule(columns=tuple(str(c) for c in spec["columns"]), parse=parse)
    raise MappingError(f"{origin}: field {field!r}: expected a column name or {{columns, parse}}")


def load_mapping(path: Path) -> Mapping:
    """Read and validate one mapping file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot read mapping: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("fields"), dict):
        raise MappingError(f"{path}: a mapping needs `name`, `detect` and `fields`")
    unknown = set(doc["fields"]) - EVENT_FIELDS - DETAIL_FIELDS
    if unknown:
        raise MappingError(f"{path}: unknown event fields {sorted(unknown)}")
    missing = [f for f in REQUIRED_FIELDS if f not in doc["fields"]]
    if missing:
        raise MappingError(f"{path}: required fields not mapped: {missing}")
    fields = {name: _rule(name, spec, str(path)) for name, spec in doc["fields"].items()}
    return Mapping(
        name=str(doc.get("name", path.stem)), detect=frozenset(doc.get("detect", [])), fields=fields
    )


def shipped_mappings() -> list[Mapping]:
    return [load_mapping(p) for p in sorted(MAPPINGS_DIR.glob("*.yaml"))]


def detect_mapping(columns: Iterable[str], mappings: Iterable[Mapping]) -> Mapping:
    """The first mapping whose `detect` columns are all present."""
    columns = list(columns)
    for mapping in mappings:
        if mapping.fits(columns):
            return mapping
    raise MappingError(f"no mapping fits columns {columns[:12]}; pass one with --mapping")
