"""An optional LLM pass over the deterministic parse (the gpu profile's Llama 3.1 on vLLM).

The deterministic parser (`retrieval.query`) stays the default and the fallback. When
`PULS_PARSE_REFINER=llm`, the request and what the parser understood go to an
OpenAI-compatible server, which answers JSON under a schema (`response_format`: vLLM's
structured outputs; llama.cpp turns the schema into a grammar). The answer only fills gaps, never
overrides the parser:

    themes   extra theme words (synonyms, the theme of a vague request), stemmed like the
             parser's own and capped at `parse_refiner_max_terms`
    time     a date range, used only when the parser found no time, and only within a year
             of `now`
    city     used only when the parser found no place, and only if the gazetteer knows it

Every change is written in the parse's `notes`, so `puls search --json` shows what the model
added. Any failure (server down, timeout, invalid JSON) returns the parse unchanged with a
note: the request never fails because of the refiner.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal, Protocol

import httpx
from pydantic import BaseModel, Field, ValidationError

from retrieval.query import PARIS, STOPWORDS, ParsedQuery, Window
from retrieval.text import fold, terms

log = logging.getLogger(__name__)

MAX_DAYS_AHEAD = 366
ResponseFormat = Literal["json_schema", "json_object"]
INSTRUCTIONS = (
    "Tu aides un moteur de recherche d'événements culturels en France. On te donne une "
    "requête en français, la date du jour et ce qu'un analyseur a déjà compris. Réponds en "
    "JSON : `themes` (au plus 5 mots-clés français de ce que la personne cherche, synonymes "
    "utiles compris), `start_date` et `end_date` (AAAA-MM-JJ, seulement si la requête parle "
    "d'une période que l'analyseur n'a pas comprise, sinon null), `city` (la commune nommée "
    "que l'analyseur n'a pas comprise, sinon null)."
)


class Refinement(BaseModel):
    """What the model may add; its JSON schema is sent as the `response_format` (the length
    bounds keep a grammar-constrained answer inside `max_tokens`)."""

    themes: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=5)
    start_date: date | None = None
    end_date: date | None = None
    city: Annotated[str, Field(max_length=60)] | None = None


class ParseRefiner(Protocol):
    """Returns a parse at least as informed as the one it gets; never raises. `cities` are
    the gazetteer's communes (a named place must be one of them)."""

    def refine(self, parsed: ParsedQuery, cities: Sequence[str]) -> ParsedQuery: ...

    def close(self) -> None: ...


class LLMParseRefiner:
    """Asks an OpenAI-compatible chat endpoint for a `Refinement` and merges it: one call per
    search, bounded by `timeout_s` (the search waits for it)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 3.0,
        max_terms: int = 4,
        response_format: ResponseFormat = "json_schema",
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.model = model
        self.max_terms = max_terms
        self.response_format = response_format

    def refine(self, parsed: ParsedQuery, cities: Sequence[str]) -> ParsedQuery:
        try:
            refinement = self._ask(parsed)
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("parse refiner unavailable, keeping the deterministic parse: %s", exc)
            return replace(parsed, notes=(*parsed.notes, "affinage LLM indisponible"))
        return merge(parsed, refinement, cities, self.max_terms)

    def _ask(self, parsed: ParsedQuery) -> Refinement:
        response = self._client.post("/chat/completions", json=self._request(parsed))
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        try:
            return Refinement.model_validate_json(content)
        except ValidationError as exc:
            raise ValueError(f"the model's answer does not fit the schema: {exc}") from exc

    def _request(self, parsed: ParsedQuery) -> dict[str, object]:
        understood = {
            "période": parsed.window.label if parsed.window.end is not None else None,
            "lieux": [*parsed.cities, *parsed.areas] or None,
            "thèmes": list(parsed.terms),
        }
        question = (
            f"Date du jour : {parsed.now.date().isoformat()}\nRequête : {parsed.text}\n"
            f"Déjà compris : {json.dumps(understood, ensure_ascii=False)}"
        )
        schema = Refinement.model_json_schema()
        if self.response_format == "json_schema":  # OpenAI's shape: vLLM, OpenAI, llama-server
            response_format = {"type": "json_schema",
                               "json_schema": {"name": "refinement", "schema": schema}}  # fmt: skip
        else:  # llama-cpp-python's server: JSON mode with a schema
            response_format = {"type": "json_object", "schema": schema}
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": question},
            ],
            "response_format": response_format,
            "temperature": 0,
            "max_tokens": 200,
        }

    def close(self) -> None:
        self._client.close()


def merge(
    parsed: ParsedQuery, refinement: Refinement, cities: Sequence[str], max_terms: int
) -> ParsedQuery:
    """The parse with the gaps the model filled; what the parser found is kept as it is."""
    notes = list(parsed.notes)
    added = [t for t in dict.fromkeys(_theme_terms(refinement.themes)) if t not in parsed.terms]
    added = added[:max_terms]
    if added:
        notes.append("LLM : thèmes ajoutés " + ", ".join(added))
    window = parsed.window
    if parsed.window.end is None:
        dated = _window(refinement, parsed.now)
        if dated is not None:
            window = dated
            notes.append(f"LLM : période {dated.label}")
    found_cities = parsed.cities
    if not (parsed.cities or parsed.areas or parsed.departments or parsed.near):
        city = _known_city(refinement.city, cities)
        if city is not None:
            found_cities = (city,)
            notes.append(f"LLM : lieu {city}")
        elif refinement.city:
            notes.append(f"LLM : lieu inconnu ignoré ({refinement.city})")
    return replace(
        parsed,
        window=window,
        cities=found_cities,
        terms=(*parsed.terms, *added),
        notes=tuple(notes),
    )


def _theme_terms(themes: Sequence[str]) -> list[str]:
    """Analysed like the parser's own theme words: stopwords out, then stemmed."""
    words = [w for theme in themes for w in fold(theme).split() if w not in STOPWORDS]
    return [t for t in terms(" ".join(words)) if len(t) > 1]


def _window(refinement: Refinement, now: datetime) -> Window | None:
    """The model's date range, if it is a real range within a year of `now`."""
    start, end = refinement.start_date, refinement.end_date or refinement.start_date
    if start is None or end is None or end < start:
        return None
    today = now.astimezone(PARIS).date()
    if end < today or start > today + timedelta(days=MAX_DAYS_AHEAD):
        return None
    begin = max(datetime.combine(start, time.min, tzinfo=PARIS), now)
    finish = datetime.combine(end + timedelta(days=1), time.min, tzinfo=PARIS)
    return Window(begin, finish, f"du {start.isoformat()} au {end.isoformat()}")


def _known_city(name: str | None, cities: Sequence[str]) -> str | None:
    """The gazetteer's spelling of `name`, or None when it knows no such commune."""
    if not name:
        return None
    by_key = {fold(city): city for city in cities}
    return by_key.get(fold(name))
