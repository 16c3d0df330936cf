"""Read rows from event exports: JSON (a list, or OpenDataSoft's `{"results": [...]}`) and CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

csv.field_size_limit(16 * 1024 * 1024)  # long HTML descriptions exceed the 128 KiB default


class SourceError(ValueError):
    """A whole file cannot be read (missing, not JSON/CSV, wrong shape)."""


@dataclass(frozen=True)
class SourceFile:
    """A file's column names and its rows, numbered as a person would count them."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]


def read_source(path: Path) -> SourceFile:
    """Read a `.json` or `.csv` export whole (exports here are a few MB)."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise SourceError(f"{path}: unsupported format {suffix!r} (expected .json or .csv)")


def _read_json(path: Path) -> SourceFile:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: invalid JSON: {exc}") from exc
    records = doc.get("results") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        raise SourceError(f'{path}: expected a JSON list or {{"results": [...]}}')
    columns: dict[str, None] = {}
    rows = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
            rows.append((number, record))
        else:
            rows.append((number, {"__invalid__": record}))
    return SourceFile(path=path, columns=list(columns), rows=rows)


def _rows(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for row in reader:
        yield reader.line_num, row


def _read_csv(path: Path) -> SourceFile:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text: {exc}") from exc
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        rows = list(_rows(reader))
    except csv.Error as exc:
        raise SourceError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from exc
    return SourceFile(path=path, columns=[c for c in reader.fieldnames or [] if c], rows=rows)
