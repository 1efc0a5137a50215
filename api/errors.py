"""Errors as JSON `{"detail": ...}`, with one status per kind of refusal.

The workflow's validators say *why* a command is refused (RefusalType); this module only maps
that to HTTP: Forbidden 403, PhaseConflict 409, InvalidCommand and NotFound (of a directory entry)
422, NotReady 503 with Retry-After. An unknown trial and another organisation's trial are the same
404, so ids of other tenants cannot be probed. Body validation stays FastAPI's 422 with pydantic's
field errors in `detail`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from schemas.api import ErrorBody
from schemas.errors import RefusalType
from trial_client.client import TrialNotFound, TrialRefused

log = logging.getLogger("provehandling.api")

REFUSAL_STATUS = {
    RefusalType.FORBIDDEN: 403,
    RefusalType.PHASE_CONFLICT: 409,
    RefusalType.INVALID: 422,
    RefusalType.NOT_FOUND: 422,
    RefusalType.NOT_READY: 503,
}
RETRY_AFTER_SECONDS = "1"
_DATABASE_UNAVAILABLE = (
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    OSError,  # refused connections and timeouts
)
_UNAVAILABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class Answer:
    """A response as data, so an idempotent request can store it and replay it."""

    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            self.body,
            status_code=self.status_code,
            headers={**self.headers, **(extra_headers or {})},
        )


class ApiError(Exception):
    """An error the API raises itself (bad token, unknown trial, bad cursor, ...)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        kind: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.kind = kind
        self.field = field
        self.headers = headers or {}

    def answer(self) -> Answer:
        body = ErrorBody(detail=self.detail, kind=self.kind, field=self.field)
        return Answer(self.status_code, body.model_dump(exclude_none=True), self.headers)


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def trial_not_found() -> ApiError:
    return ApiError(404, "trial not found", kind=RefusalType.NOT_FOUND.value)


def answer_for(error: BaseException) -> Answer | None:
    """The answer for an error the API knows, or None for a bug (which becomes a 500)."""
    if isinstance(error, ApiError):
        return error.answer()
    if isinstance(error, TrialRefused):
        status = REFUSAL_STATUS.get(error.kind, 422)
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else {}
        return ApiError(
            status, error.message, kind=error.kind.value, field=error.field, headers=headers
        ).answer()
    if isinstance(error, TrialNotFound):
        return trial_not_found().answer()
    temporal_down = isinstance(error, RPCError) and error.status in _UNAVAILABLE
    # A lazily connected client that cannot reach Temporal says so with a plain RuntimeError.
    temporal_down |= isinstance(error, RuntimeError) and str(error).startswith(
        "Failed client connect"
    )
    if temporal_down:
        return ApiError(
            503,
            "Temporal is not answering; try again shortly",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ).answer()
    if isinstance(error, _DATABASE_UNAVAILABLE):
        return ApiError(
            503,
            "the database is not answering; try again shortly",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ).answer()
    return None


async def _handle(request: Request, error: Exception) -> JSONResponse:
    answer = answer_for(error)
    if answer is None:
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=error)
        answer = Answer(500, {"detail": "internal error; it has been logged"})
    elif answer.status_code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, error)
    return answer.response()


def install(app: FastAPI) -> None:
    """Register the handlers that turn known errors into JSON answers."""
    for kind in (ApiError, TrialRefused, TrialNotFound, RPCError, Exception):
        app.add_exception_handler(kind, _handle)


ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing or invalid bearer token, or a token for no person of its organisation.",
    403: "Not allowed; `detail` names the rule (e.g. no self-approval).",
    404: "No such trial in your organisation.",
    409: "The trial's phase does not allow this command now; `detail` says when it does.",
    422: "Invalid request: `detail` lists pydantic's field errors, or names the broken rule.",
    503: "A dependency is not ready; retry after `Retry-After` seconds.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an operation can answer."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}
