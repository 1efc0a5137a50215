"""The OpenAPI document: what /docs and /openapi.json tell a client developer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemas.duration import _UNIT_WORDS  # the unit words Duration accepts, to document them

DESCRIPTION = """
A *prøvehandling* (trial action) is a small, time-boxed experiment an employee proposes in their
own work: one Plan-Do-Study-Act cycle, from proposal through leader approval, the trial period,
evaluation and the decision to adopt, adapt or abandon.

**Authentication.** Every `/api/v1` call except the health probes needs
`Authorization: Bearer <JWT>` whose `sub` is your person id and `org` your organisation id.
Roles (leader, substitute, admin) come from the directory, never from the token. You see and act
on your own organisation's trials only; another organisation's trial is a 404 like an unknown one.

**Commands** return the trial's new view. A refused command is answered with a JSON error whose
`detail` names the rule: 403 not allowed (e.g. no self-approval), 409 not in this phase,
422 invalid data. A substitute acts on behalf of the leader they stand in for, and the audit trail
(`GET /trials/{id}/events`) records both.

**Idempotency.** Send `Idempotency-Key: <unique string>` with any POST: a retry with the same key
and body returns the first answer (with `Idempotent-Replayed: true`) and acts once, even when the
two requests race; the same key with another body or path is a 422. Keys are kept for 24 hours.

**Lists** are sorted by last activity, newest first, and paged with the opaque `next_cursor`.
"""

TAGS: list[dict[str, Any]] = [
    {"name": "trials", "description": "Propose, list and read trials and their audit trail."},
    {"name": "commands", "description": "Commands on a trial; each returns the new trial view."},
    {"name": "inbox", "description": "What waits on the caller."},
    {"name": "health", "description": "Liveness and readiness probes (no token needed)."},
]

_DURATION_TEXT = {
    "type": "string",
    "pattern": r"^ *[0-9]{1,6} +(" + "|".join(sorted(_UNIT_WORDS, key=len, reverse=True)) + r") *$",
    "description": "A whole number and a unit (English or Danish).",
    "examples": ["5 working days", "6 weeks", "30 seconds"],
}


def _document_duration_text(schema: dict[str, Any]) -> None:
    """Durations are sent as text ("6 weeks"), which pydantic's input schema cannot tell."""
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("Duration-Input", "Duration"):
        structured = schemas.get(name)
        if structured is None or "anyOf" in structured:
            continue
        schemas[name] = {
            "title": structured.get("title", "Duration"),
            "description": structured.get("description", ""),
            "anyOf": [_DURATION_TEXT, {k: v for k, v in structured.items() if k != "title"}],
        }
        return


def install(app: FastAPI) -> None:
    """Build the document once, with the additions pydantic cannot generate by itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_duration_text(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
