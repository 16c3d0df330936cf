"""Input rails: decline requests the assistant must not act on, before any retrieval or generation.

Deterministic patterns for now (NeMo Guardrails flows come with their own issue). A declined
request gets a fixed French answer and no citations: nothing is invented, nothing revealed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.text import fold

MAX_QUERY_CHARS = 2000

_INJECTION = re.compile(
    r"\b(ignore|oublie|oubliez|ignorez)\b.{0,30}\b(instructions?|consignes?|regles?)\b"
    r"|\b(prompt|message) (systeme|system)\b|\bsystem prompt\b|\bjailbreak\b"
)

DECLINE_INJECTION = (
    "Je ne peux pas modifier mes consignes ni les dévoiler. "
    "Je peux en revanche vous aider à trouver une sortie culturelle : "
    "dites-moi quoi, où et quand."
)


@dataclass(frozen=True)
class Decline:
    """The request is refused; `reply` is what the user reads, `rule` what the logs count."""

    rule: str
    reply: str


def check_input(text: str) -> Decline | None:
    """None if the request may proceed, else why not and what to answer."""
    if _INJECTION.search(fold(text)):
        return Decline(rule="prompt_injection", reply=DECLINE_INJECTION)
    return None
