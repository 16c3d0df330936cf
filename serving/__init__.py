"""The OpenAI-compatible API, its engines and its app factory."""
