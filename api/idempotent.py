"""Idempotency-Key on POST: a retried request gets the first answer, and acts once.

Two layers, because neither alone is enough:
- the *action* happens once through Temporal: a command's update id and a new trial's workflow id
  are derived from (organisation, person, key), so even two identical requests racing before
  either stored an answer end in one update or one workflow;
- the *answer* is stored (store/idempotency.py), so a retry after the trial moved on still gets
  the first answer, and reusing a key for a different request is refused with 422.
Errors the client caused (4xx) are stored as answers too; 5xx and 503 are not, so a retry after
an outage acts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from api.auth import Caller
from api.deps import Services
from api.errors import Answer, ApiError, answer_for
from store import idempotency
from store.idempotency import StoredAnswer

REPLAYED_HEADER = "Idempotent-Replayed"

Action = Callable[[str | None], Awaitable[Answer]]


async def _run(action: Action, scoped_key: str | None) -> Answer:
    try:
        return await action(scoped_key)
    except Exception as error:
        answer = answer_for(error)
        if answer is None:
            raise
        return answer


def _replay(stored: StoredAnswer, method: str, path: str, digest: str, key: str) -> Response:
    if not stored.matches(method, path, digest):
        return (
            ApiError(
                422,
                f"Idempotency-Key {key!r} was already used for a different request"
                f" ({stored.method} {stored.path}); use a new key for a new request",
                field="Idempotency-Key",
            )
            .answer()
            .response()
        )
    answer = Answer(stored.status_code, stored.body, stored.headers)
    return answer.response({REPLAYED_HEADER: "true"})


async def idempotent(
    svc: Services,
    caller: Caller,
    request: Request,
    key: str | None,
    body: Any,
    action: Action,
) -> Response:
    """Run `action` once per (caller, key); `action` gets the key scoped to the caller."""
    if key is None:
        return (await _run(action, None)).response()
    org, person = caller.organisation_id, caller.person_id
    method, path = request.method, request.url.path
    digest = idempotency.request_hash(body)
    stored = await idempotency.find(svc.pool, org, person, key)
    if stored is not None:
        return _replay(stored, method, path, digest, key)
    answer = await _run(action, f"{org}:{person}:{key}")
    if answer.status_code >= 500:
        return answer.response()
    mine = StoredAnswer(method, path, digest, answer.status_code, answer.body, answer.headers)
    kept, ours = await idempotency.store(svc.pool, org, person, key, mine)
    if ours:
        return answer.response()
    return _replay(kept, method, path, digest, key)
