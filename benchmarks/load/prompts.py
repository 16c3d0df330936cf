"""Prompt files and the request bodies built from them.

A prompt file is JSON Lines, one question a line:
`{"id": "fr-01", "query": "...", "now": "2025-06-13T18:00:00+02:00", "location": {"lat", "lon"}}`;
`now` and `location` are optional and travel in the `puls` extension to endpoints that speak it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load.errors import ConfigError

DEFAULT_PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "fr-events.jsonl"


@dataclass(frozen=True)
class Prompt:
    id: str
    query: str
    puls: dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and what they look like there.

    `extension` says whether the `puls` fields are sent: a raw engine does not know them.
    """

    name: str
    url: str
    model: str
    extension: bool = True


def chat_url(url: str) -> str:
    """Accept a server root, a `/v1` base or the full chat-completions URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return f"{url}/chat/completions"
    return f"{url}/v1/chat/completions"


def load_prompts(path: Path) -> list[Prompt]:
    """Read a prompt file; any bad line is a ConfigError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    prompts = [_prompt(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not prompts:
        raise ConfigError(f"{path}: no prompt")
    return prompts


def _prompt(path: Path, number: int, line: str) -> Prompt:
    try:
        row = json.loads(line)
        puls = {key: row[key] for key in ("now", "location") if row.get(key) is not None}
        return Prompt(id=str(row.get("id", number)), query=str(row["query"]), puls=puls)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}:{number}: not a prompt line ({exc})") from exc


def chat_body(prompt: Prompt, endpoint: Endpoint, max_tokens: int) -> dict[str, Any]:
    """A streaming chat request asking for the usage chunk (`stream_options.include_usage`)."""
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": prompt.query}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
    }
    if endpoint.extension and prompt.puls:
        body["puls"] = prompt.puls
    return body
