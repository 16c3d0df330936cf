"""Text-generation engines behind one protocol, chosen by settings."""

from serving.llm.protocol import LLM, Chunk, EngineError, EngineUnavailable, SamplingParams, Usage
from serving.settings import ServingSettings


def build_llm(settings: ServingSettings) -> LLM:
    """`PULS_LLM_URL` set: a remote OpenAI-compatible server; unset: llama.cpp in-process."""
    if settings.llm_url:
        from serving.llm.openai_http import OpenAIHTTPLLM

        return OpenAIHTTPLLM(
            settings.llm_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_timeout_s,
        )
    from serving.llm.llama_cpp import LlamaCppLLM

    return LlamaCppLLM(settings.llm_model_path, settings.llm_context, settings.llm_threads)


def build_large_llm(settings: ServingSettings) -> LLM | None:
    """The large route's engine (`PULS_LLM_LARGE_URL`), always remote; None = no large route."""
    if not settings.llm_large_url:
        return None
    from serving.llm.openai_http import OpenAIHTTPLLM

    return OpenAIHTTPLLM(
        settings.llm_large_url,
        settings.llm_large_model or settings.llm_model,
        settings.llm_api_key,
        settings.llm_timeout_s,
    )


__all__ = [
    "LLM",
    "Chunk",
    "EngineError",
    "EngineUnavailable",
    "SamplingParams",
    "Usage",
    "build_large_llm",
    "build_llm",
]
