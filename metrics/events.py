"""Counting recorded trial events: phase transitions, escalations and approval time.

Called by the record_event activity only after the event's first write, so a retried activity
never counts twice. The counts are per process; Prometheus sums them across worker replicas.
"""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from metrics import domain
from schemas.trial import EventKind, RecordEventInput, TrialView
from workflows.calendar import BusinessCalendar

log = logging.getLogger("provehandling.metrics")

# Events that put the trial into the phase they carry. ADAPTED is not here: it is recorded while
# the trial is still deciding, and the PROPOSED event of the next iteration follows it.
TRANSITIONS = frozenset(
    {
        EventKind.PROPOSED,
        EventKind.REVISED,
        EventKind.APPROVED,
        EventKind.CHANGES_REQUESTED,
        EventKind.REJECTED,
        EventKind.WITHDRAWN,
        EventKind.STARTED,
        EventKind.PAUSED,
        EventKind.RESUMED,
        EventKind.ABORTED,
        EventKind.ENDED,
        EventKind.EVALUATION_CLOSED,
        EventKind.ADOPTED,
        EventKind.ABANDONED,
    }
)

PROPOSED_AT = """
SELECT min(occurred_at) FROM trial_events
WHERE trial_id = $1 AND iteration = $2 AND kind = 'proposed'
"""


def approval_durations(
    view: TrialView, proposed_at: datetime, approved_at: datetime
) -> tuple[float, float]:
    """(seconds, working days) from proposal to approval, in the organisation's calendar."""
    calendar = BusinessCalendar.for_policy(view.policy)
    seconds = max((approved_at - proposed_at).total_seconds(), 0.0)
    days = max(calendar.working_days_between(proposed_at, approved_at), 0.0)
    return seconds, days


def count_event(item: RecordEventInput, proposed_at: datetime | None = None) -> None:
    """Count one first-time recorded event; `proposed_at` is needed for APPROVED only."""
    event, view = item.event, item.view
    org = view.organisation_id
    if event.kind in TRANSITIONS:
        domain.PHASE_TRANSITIONS.labels(org, event.phase.value).inc()
    if event.kind is EventKind.ESCALATED:
        step = str(event.data.get("step", "unknown"))
        level = str(event.data.get("level", "unknown"))
        domain.ESCALATIONS.labels(org, step, level).inc()
    if event.kind is EventKind.APPROVED:
        start = proposed_at or (view.created_at if event.iteration == 1 else None)
        if start is None:
            log.warning("approval time not observed: no proposal time for the iteration")
            return
        seconds, days = approval_durations(view, start, event.occurred_at)
        domain.APPROVAL_SECONDS.labels(org).observe(seconds)
        domain.APPROVAL_WORKING_DAYS.labels(org).observe(days)


async def observe_recorded(pool: asyncpg.Pool, item: RecordEventInput) -> None:
    """Count an event that was just written for the first time; never raises.

    The write has happened, so a failure here must not fail (and retry) the activity: a retry
    would find the event recorded and count nothing anyway.
    """
    try:
        proposed_at: datetime | None = None
        if item.event.kind is EventKind.APPROVED:
            proposed_at = await pool.fetchval(
                PROPOSED_AT, item.event.trial_id, item.event.iteration, timeout=5
            )
        count_event(item, proposed_at)
    except Exception:
        log.warning("could not count a recorded event in the metrics", exc_info=True)
