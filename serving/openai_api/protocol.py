"""OpenAI chat-completions request and response models, plus the `puls` extension.

Imports only pydantic. Unknown top-level OpenAI fields are accepted and ignored (as vLLM does);
unknown keys inside `puls` are an error, so typos do not silently change results.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class PulsOptions(BaseModel):
    """`extra_body={"puls": {...}}`: Puls-specific request fields."""

    model_config = ConfigDict(extra="forbid")

    now: datetime | None = Field(
        None, description="The moment the user asks; relative dates resolve against it."
    )
    location: Location | None = Field(None, description="The user's position, for 'près de moi'.")
    session_id: str | None = Field(None, max_length=128, description="Conversation id.")


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(None, max_length=256, description="Whose daily token budget pays.")
    n: int = Field(1, ge=1, le=1)
    puls: dict[str, Any] | None = None


class Citation(BaseModel):
    """A real event the answer is built from, as stored."""

    uid: str
    title: str
    start: datetime
    end: datetime
    venue: str
    city: str
    url: str
    distance_km: float | None = None


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    citations: list[Citation]
    puls: dict[str, Any] | None = Field(
        None, description="With `puls.session_id`: the session's id, summary and slots."
    )


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
