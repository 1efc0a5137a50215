"""JSON-lines logs for log collectors (Loki, Elastic, Cloud Logging), one object per line.

Fields: ts (UTC, ISO 8601), level, logger, message, and trial_id, workflow_id, organisation and
event when the call site passes them with `extra=`. Events are logged with ids only: person ids,
names, e-mail addresses and free text (comments, notes, reasons) may be personal data and stay in
the database, where they can be erased.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from schemas.trial import TrialEvent

FORMAT_FIELDS = "{levelname}{name}{message}"
RENAMED = {"levelname": "level", "name": "logger"}


class _LineFormatter(JsonFormatter):
    """Puts `ts` first, so a line reads in time order by eye as well as by machine."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)


def json_formatter() -> logging.Formatter:
    return _LineFormatter(FORMAT_FIELDS, style="{", rename_fields=RENAMED, json_ensure_ascii=False)


def event_fields(
    event: TrialEvent, organisation_id: str, workflow_id: str | None = None
) -> dict[str, Any]:
    """The `extra=` of an event's log line: ids, kind, phase and position, nothing personal."""
    fields: dict[str, Any] = {
        "trial_id": str(event.trial_id),
        "workflow_id": workflow_id or f"trial-{event.trial_id}",
        "organisation": organisation_id,
        "event": event.kind.value,
        "phase": event.phase.value,
        "seq": event.seq,
        "iteration": event.iteration,
    }
    step = event.data.get("step")
    if isinstance(step, str):
        fields["step"] = step
    level = event.data.get("level")
    if isinstance(level, int):
        fields["rung"] = level  # "level" is the log level
    return fields


def log_event(
    logger: logging.Logger,
    event: TrialEvent,
    organisation_id: str,
    workflow_id: str | None = None,
) -> None:
    """Log one recorded trial event without personal data (see the module docstring)."""
    logger.info(
        "trial event %s", event.kind.value, extra=event_fields(event, organisation_id, workflow_id)
    )
