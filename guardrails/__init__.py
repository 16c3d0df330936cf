"""Rails around the assistant: what it refuses before retrieval and generation."""

from guardrails.input_rails import MAX_QUERY_CHARS, Decline, check_input

__all__ = ["MAX_QUERY_CHARS", "Decline", "check_input"]
