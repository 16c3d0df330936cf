"""Puls: the composition root (settings, CLI) over ingest, retrieval, serving, guardrails."""
