"""Projection of trial events into PostgreSQL: audit trail, current row and outbox at once.

Keyed by (trial_id, seq) and by notification key, so an activity retried after a crash writes
nothing new, and the current row only ever moves forward to the view of a higher seq. The rows
of `trial_people` (who proposes, takes part and may approve) move with the current row, so the
API's inbox reads indexed columns instead of JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.trial import (
    EventKind,
    Phase,
    RecordEventInput,
    RecordEventsInput,
    TrialEvent,
    TrialView,
)
from store import outbox

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class OutOfOrderEvent(RuntimeError):
    """An event arrived before its predecessor; retrying lets the predecessor land first."""


def due_at(view: TrialView) -> datetime | None:
    """The deadline of what the trial waits on now (approval, start, check-in, ...), if any."""
    d = view.deadlines
    if view.closed:
        return None
    return {
        Phase.PROPOSED: d.approval_due,
        Phase.SCHEDULED: d.starts_at,
        Phase.RUNNING: d.check_in_due,
        Phase.EVALUATING: d.evaluation_due,
        Phase.DECIDING: d.decision_due,
        Phase.ADOPTED: d.follow_up_at,
    }.get(view.phase)


def people_rows(view: TrialView) -> list[tuple[object, ...]]:
    """The trial_people rows of a view: proposer, participants and everyone who may approve."""
    phase = view.phase.value
    rows: list[tuple[object, ...]] = [
        (view.trial_id, view.proposer_id, "proposer", phase, None, None, None, None)
    ]
    rows.extend(
        (view.trial_id, person, "participant", phase, None, None, None, None)
        for person in dict.fromkeys(view.participants)
    )
    rows.extend(
        (
            view.trial_id,
            e.person_id,
            "approver",
            phase,
            e.via,
            e.on_behalf_of,
            e.valid_from,
            e.valid_to,
        )
        for e in view.eligible_approvers
    )
    return rows


def notification_key(trial_id: str, seq: int, kind: str, recipient_id: str) -> str:
    return f"{trial_id}:{seq}:{kind}:{recipient_id}"


async def _append(conn: Conn, event: TrialEvent, view: TrialView) -> bool:
    """Write one event with its measures and outbox rows; False when it was already written."""
    data = event.data
    if event.seq > 1:
        previous = await conn.fetchval(
            "SELECT 1 FROM trial_events WHERE trial_id = $1 AND seq = $2",
            event.trial_id,
            event.seq - 1,
        )
        if previous is None:
            exists = await conn.fetchval(
                "SELECT 1 FROM trial_events WHERE trial_id = $1 AND seq = $2",
                event.trial_id,
                event.seq,
            )
            if exists is None:
                raise OutOfOrderEvent(
                    f"event {event.seq} of {event.trial_id} before its predecessor"
                )
    inserted = await conn.fetchval(
        """
        INSERT INTO trial_events
            (trial_id, seq, iteration, kind, phase, actor_id, on_behalf_of, occurred_at, data)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (trial_id, seq) DO NOTHING
        RETURNING seq
        """,
        event.trial_id,
        event.seq,
        event.iteration,
        event.kind.value,
        event.phase.value,
        event.actor_id,
        event.on_behalf_of,
        event.occurred_at,
        data,
    )
    if inserted is None:
        return False
    if event.kind is EventKind.CHECKED_IN and event.actor_id:
        measures = data.get("measures") or {}
        await conn.executemany(
            """
            INSERT INTO trial_measures (trial_id, seq, measure, value, reported_by, reported_at)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
            """,
            [
                (
                    event.trial_id,
                    event.seq,
                    name,
                    float(value),
                    event.actor_id,
                    event.occurred_at,
                )
                for name, value in measures.items()
            ],
        )
    if event.notifications:
        await conn.executemany(
            """
            INSERT INTO notifications (idempotency_key, trial_id, event_seq, organisation_id,
                                       recipient_id, kind)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING
            """,
            [
                (
                    notification_key(str(event.trial_id), event.seq, n.kind.value, n.recipient_id),
                    event.trial_id,
                    event.seq,
                    view.organisation_id,
                    n.recipient_id,
                    n.kind.value,
                )
                for n in event.notifications
            ],
        )
    # Teams cards, webhook deliveries and NOTIFY provehandling_outbox (store/outbox.py).
    await outbox.enqueue_deliveries(conn, event, view.organisation_id, view.unit_id)
    return True


async def _project(conn: Conn, view: TrialView, seq: int, occurred_at: datetime) -> None:
    """Move the trial's current row (and its people) forward to `view`, the view after `seq`."""
    moved = await conn.fetchval(
        """
        INSERT INTO trials (id, workflow_id, organisation_id, unit_id, proposer_id, title,
                            phase,
                            iteration, stalled, escalation_level, last_seq, created_at,
                            last_activity_at, view, due_at, approved_by, evaluated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        ON CONFLICT (id) DO UPDATE SET
            unit_id = EXCLUDED.unit_id, title = EXCLUDED.title, phase = EXCLUDED.phase,
            iteration = EXCLUDED.iteration, stalled = EXCLUDED.stalled,
            escalation_level = EXCLUDED.escalation_level, last_seq = EXCLUDED.last_seq,
            last_activity_at = EXCLUDED.last_activity_at, view = EXCLUDED.view,
            due_at = EXCLUDED.due_at, approved_by = EXCLUDED.approved_by,
            evaluated_by = EXCLUDED.evaluated_by
        WHERE trials.last_seq < EXCLUDED.last_seq
        RETURNING last_seq
        """,
        view.trial_id,
        view.workflow_id,
        view.organisation_id,
        view.unit_id,
        view.proposer_id,
        view.proposal.title,
        view.phase.value,
        view.iteration,
        view.stalled,
        view.escalation_level,
        seq,
        view.created_at,
        occurred_at,
        view.model_dump(mode="json"),
        due_at(view),
        sorted(
            {a.person_id for a in view.approvals}
            | {a.on_behalf_of for a in view.approvals if a.on_behalf_of}
        ),
        sorted({e.person_id for e in view.evaluations}),
    )
    if moved is not None:
        # Only when the row moved forward: an older event arriving late must not put back
        # the people of an older view.
        await conn.execute("DELETE FROM trial_people WHERE trial_id = $1", view.trial_id)
        await conn.executemany(
            """
            INSERT INTO trial_people
                (trial_id, person_id, role, phase, via, on_behalf_of, valid_from, valid_to)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            people_rows(view),
        )


async def record_event(pool: asyncpg.Pool, item: RecordEventInput) -> bool:
    """Write the event, the trial's row and its notifications; False when it was already written."""
    [written] = await record_events(pool, RecordEventsInput(events=[item.event], view=item.view))
    return written


async def record_events(pool: asyncpg.Pool, item: RecordEventsInput) -> list[bool]:
    """Write every event one command or timer caused, and the view after the last, at once.

    One transaction and one activity for what a command causes (an approval that reaches quorum
    is approval_given, approved and started) keeps a command's round trip to one write.
    """
    async with pool.acquire() as conn, conn.transaction():
        written = [await _append(conn, event, item.view) for event in item.events]
        if any(written):
            last = item.events[-1]
            await _project(conn, item.view, last.seq, last.occurred_at)
    return written
