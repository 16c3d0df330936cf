"""Errors the API reports, and the one mapper to OpenAI's error envelope.

PulsAPIError            base: has an HTTP status, an OpenAI error type and extra headers
├── BadRequest          400 the request is well-formed JSON but asks for something invalid
├── Unauthorized        401 API keys are configured and the bearer token is missing or wrong
├── ModelNotFound       404 `model` names no served model
├── PayloadTooLarge     413 the body is longer than `max_body_bytes`
├── InvalidBody         422 the body does not match the schema
├── RateLimited         429 the daily token hard cap is spent (with `Retry-After`)
└── NotReady            503 warm-up not finished, or a backend is down
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class PulsAPIError(Exception):
    status = 500
    type = "internal_error"

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class BadRequest(PulsAPIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(PulsAPIError):
    status = 401
    type = "authentication_error"


class ModelNotFound(PulsAPIError):
    status = 404
    type = "invalid_request_error"


class PayloadTooLarge(PulsAPIError):
    status = 413
    type = "invalid_request_error"


class InvalidBody(PulsAPIError):
    status = 422
    type = "invalid_request_error"


class RateLimited(PulsAPIError):
    status = 429
    type = "rate_limit_error"


class NotReady(PulsAPIError):
    status = 503
    type = "service_unavailable"


def error_body(exc: PulsAPIError) -> dict[str, Any]:
    return {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }


def error_response(exc: PulsAPIError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers or None)


def from_validation_error(exc: RequestValidationError) -> PulsAPIError:
    """FastAPI's validation errors, in the same envelope: broken JSON is 400, a bad field 422."""
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return BadRequest("request body is not valid JSON", code="invalid_json")
    param = ".".join(loc) or None
    return InvalidBody(
        f"{param or 'body'}: {first.get('msg', 'invalid')}", param=param, code="invalid_value"
    )


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PulsAPIError)
    return error_response(exc)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(from_validation_error(exc))
