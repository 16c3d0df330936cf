"""OpenAgenda API v2 client: `GET /v2/agendas/{uid}/events`, paginated, incremental, patient.

Pagination follows the API's `after` cursor (the response's `after` array is sent back as
`after[]` until it is null); incremental runs ask for `updatedAt[gte]` sorted by
`updatedAt.asc`, so the last `updatedAt` seen is the next run's watermark. Events are
flattened to the ODS export's field names, so the shipped `openagenda-ods` mapping
normalises them exactly like a file.

Errors:

    OpenAgendaError            anything this client gives up on
    ├── OpenAgendaRejected     a 4xx other than 429 (bad key, unknown agenda): retrying won't help
    └── OpenAgendaUnavailable  429 / 5xx / network errors still failing after every retry
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

DEFAULT_BASE_URL = "https://api.openagenda.com/v2"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
PAGE_SIZE = 100  # the API's maximum page size for events
MAX_ATTEMPTS = 5
MAX_RETRY_AFTER_S = 60.0
_backoff = wait_exponential(multiplier=0.5, max=20)


class OpenAgendaError(Exception):
    """The API could not give us the events."""


class OpenAgendaRejected(OpenAgendaError):
    """A 4xx answer other than 429: the request itself is wrong."""


class OpenAgendaUnavailable(OpenAgendaError):
    """Still failing (429, 5xx, network) after every retry."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["Retry-After"]), MAX_RETRY_AFTER_S)
    except (KeyError, ValueError):
        return None


def _wait(state: RetryCallState) -> float:
    """The server's Retry-After when it gave one (429), else exponential backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _Retryable) and error.retry_after is not None:
        return error.retry_after
    return float(_backoff(state))


class OpenAgendaClient:
    """Reads one agenda's events. `backoff` scales every wait (tests set it to 0)."""

    def __init__(
        self,
        key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"key": key}, transport=transport
        )
        self._get_page = retry(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(max_attempts),
            wait=lambda state: _wait(state) * backoff,
            reraise=True,
        )(self._get_page_once)

    def close(self) -> None:
        self._http.close()

    def _get_page_once(self, path: str, params: list[tuple[str, Any]]) -> dict[str, Any]:
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:  # timeouts included
            raise _Retryable(f"{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"{path}: HTTP {response.status_code}", _retry_after(response))
        if response.status_code >= 400:
            raise OpenAgendaRejected(f"{path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            page = response.json()
        except json.JSONDecodeError as exc:
            raise _Retryable(f"{path}: response is not JSON") from exc
        if not isinstance(page, dict) or not isinstance(page.get("events"), list):
            raise OpenAgendaRejected(f"{path}: unexpected response shape")
        return page

    def events(self, agenda_uid: str, updated_since: datetime | None = None) -> Iterator[dict]:
        """Every event of the agenda (updated at or after `updated_since`), oldest update first."""
        path = f"/agendas/{agenda_uid}/events"
        base: list[tuple[str, Any]] = [
            ("size", str(PAGE_SIZE)),
            ("detailed", "1"),
            ("sort", "updatedAt.asc"),
        ]
        if updated_since is not None:
            base.append(("updatedAt[gte]", updated_since.isoformat()))
        after: list[Any] | None = []
        while after is not None:
            try:
                page = self._get_page(path, base + [("after[]", str(a)) for a in after])
            except _Retryable as exc:
                raise OpenAgendaUnavailable(str(exc)) from exc
            yield from page["events"]
            after = page.get("after") or None
            if not page["events"]:
                break


def _fr(value: Any) -> Any:
    """A multilingual field's French text (or its only language, or the value itself)."""
    if isinstance(value, dict):
        return value.get("fr") or next(iter(value.values()), None)
    return value


def to_ods_row(event: dict[str, Any], agenda_uid: str) -> dict[str, Any]:
    """An API event under the ODS export's field names (personal data is not carried over)."""
    location = event.get("location") or {}
    timings = event.get("timings") or []
    first, last = event.get("firstTiming") or {}, event.get("lastTiming") or {}
    has_point = location.get("latitude") is not None and location.get("longitude") is not None
    age = event.get("age") or {}
    return {
        "uid": str(event.get("uid", "")),
        "title_fr": _fr(event.get("title")),
        "description_fr": _fr(event.get("description")),
        "longdescription_fr": _fr(event.get("longDescription")),
        "keywords_fr": _fr(event.get("keywords")) or [],
        "firstdate_begin": first.get("begin") or (timings[0]["begin"] if timings else None),
        "lastdate_end": last.get("end") or (timings[-1]["end"] if timings else None),
        "timings": timings,
        "location_name": location.get("name"),
        "location_address": location.get("address"),
        "location_city": location.get("city"),
        "location_postalcode": location.get("postalCode"),
        "location_coordinates": (
            {"lat": location["latitude"], "lon": location["longitude"]} if has_point else None
        ),
        "canonicalurl": f"https://openagenda.com/agendas/{agenda_uid}/events/{event.get('slug')}",
        "updatedat": event.get("updatedAt"),
        "status": event.get("status"),
        "attendancemode": event.get("attendanceMode"),
        "onlineaccesslink": event.get("onlineAccessLink"),
        "age_min": age.get("min"),
        "age_max": age.get("max"),
        "accessibility": event.get("accessibility"),
        "registration": event.get("registration"),
    }
