"""What the dense side embeds: the request's content by default (docs/adr/0005 decision 8)."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from retrieval import RetrievalSettings, close_retriever, open_retriever
from retrieval.query import parse_query
from retrieval.search import dense_text

NOW = datetime(2025, 6, 1, 10, tzinfo=ZoneInfo("Europe/Paris"))
JAZZ = "Un concert de jazz à Paris en juin 2025 ?"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (JAZZ, "content", "concert jazz"),
        (JAZZ, "question", JAZZ),
        ("Que faire ce soir ?", "content", "Que faire ce soir ?"),  # no content words
    ],
)
def test_dense_text(text: str, mode: str, expected: str) -> None:
    assert dense_text(parse_query(text, NOW, ["Paris"]), mode) == expected


@pytest.mark.integration
@pytest.mark.parametrize(("mode", "embedded"), [("content", "concert jazz"), ("question", JAZZ)])
def test_a_search_embeds_the_dense_text(
    ingested: Path, tmp_path: Path, mode: str, embedded: str
) -> None:
    """The search's query vector is the one for the dense text: asking for it afterwards is a
    hit in the retriever's LRU, not a second embedding."""
    data_dir = tmp_path / "data"
    shutil.copytree(ingested, data_dir)
    retriever = open_retriever(RetrievalSettings(data_dir=data_dir, dense_query=mode))
    try:
        result = retriever.search(JAZZ, NOW)
        assert result.events and "jazz" in result.events[0].event.title.lower()
        hits = retriever.query_vector.cache_info().hits
        retriever.query_vector(embedded)
        assert retriever.query_vector.cache_info().hits == hits + 1
    finally:
        close_retriever(retriever)
