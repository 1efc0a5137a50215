"""Reads of the read model for the API: one trial, lists with keyset pages, audit trail, inbox.

Every read is scoped to one organisation: a trial of another organisation is not found, exactly
like a trial that does not exist. Lists never ask Temporal; they read `trials` and `trial_people`
through indexes (see migrations/002_api.sql) so a page costs the same at 100,000 trials as at ten.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.api import AuditEvent, Inbox, InboxItem, TrialSummary
from schemas.trial import ENDED_PHASES, Phase, TrialView

INBOX_SECTION_LIMIT = 100
CHECK_IN_SOON = timedelta(days=2)  # a running trial's check-in shows in the inbox this early

_SUMMARY_COLUMNS = """
    id AS trial_id, title, phase, organisation_id, unit_id, proposer_id, iteration, stalled,
    escalation_level, created_at, last_activity_at, due_at
"""
_ENDED = sorted(p.value for p in ENDED_PHASES)


class BadCursor(ValueError):
    """A cursor that this service did not hand out (or that was altered)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (last_activity_at, id) of its last row, newest first."""

    last_activity_at: datetime
    trial_id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.last_activity_at.isoformat(), str(self.trial_id)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            at, trial_id = json.loads(raw)
            moment = datetime.fromisoformat(at)
            if moment.tzinfo is None:
                raise ValueError("naive timestamp")
            return cls(moment, UUID(trial_id))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise BadCursor("cursor: not a cursor from a previous page of this list") from None


@dataclass
class TrialFilter:
    """What GET /trials filters on; None (or empty) means no condition."""

    phases: list[Phase] = field(default_factory=list)
    unit_id: str | None = None
    proposer_id: str | None = None
    stalled: bool | None = None
    escalated: bool | None = None
    text: str | None = None


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def unit_subtree(pool: asyncpg.Pool, organisation_id: str, unit_ids: list[str]) -> list[str]:
    """The units and all units below them, within one organisation (cycles end the walk)."""
    if not unit_ids:
        return []
    rows = await pool.fetch(
        """
        WITH RECURSIVE tree(id) AS (
            SELECT u.id FROM units u WHERE u.id = ANY($2::text[]) AND u.organisation_id = $1
            UNION
            SELECT u.id FROM units u JOIN tree t ON u.parent_id = t.id
            WHERE u.organisation_id = $1
        )
        SELECT id FROM tree ORDER BY id LIMIT 100000
        """,
        organisation_id,
        unit_ids,
    )
    return [r["id"] for r in rows]


async def list_trials(
    pool: asyncpg.Pool,
    organisation_id: str,
    filters: TrialFilter,
    *,
    limit: int = 20,
    after: Cursor | None = None,
) -> tuple[list[TrialSummary], Cursor | None]:
    """One page, most recent activity first; the cursor is None on the last page.

    Keyset pagination on (last_activity_at DESC, id DESC): a page continues strictly after the
    previous page's last row, so trials inserted meanwhile (newer, so before page one) never
    shift later pages into duplicates or gaps. Boolean filters are written into the SQL rather
    than passed as parameters, so the planner can use the partial indexes on them.
    """
    conditions = ["organisation_id = $1"]
    args: list[Any] = [organisation_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.phases:
        conditions.append(f"phase = ANY({arg(sorted({p.value for p in filters.phases}))}::text[])")
    if filters.unit_id is not None:
        units = await unit_subtree(pool, organisation_id, [filters.unit_id])
        if not units:
            return [], None
        if len(units) == 1:
            conditions.append(f"unit_id = {arg(units[0])}")
        else:
            conditions.append(f"unit_id = ANY({arg(units)}::text[])")
    if filters.proposer_id is not None:
        conditions.append(f"proposer_id = {arg(filters.proposer_id)}")
    if filters.stalled is not None:
        conditions.append("stalled" if filters.stalled else "NOT stalled")
    if filters.escalated is not None:
        conditions.append("escalation_level > 0" if filters.escalated else "escalation_level = 0")
    if filters.text:
        conditions.append(f"lower(title) LIKE {arg(_like_pattern(filters.text))}")
    if after is not None:
        at, trial_id = arg(after.last_activity_at), arg(after.trial_id)
        conditions.append(f"(last_activity_at, id) < ({at}, {trial_id})")
    sql = f"""
        SELECT {_SUMMARY_COLUMNS} FROM trials
        WHERE {" AND ".join(conditions)}
        ORDER BY last_activity_at DESC, id DESC
        LIMIT {arg(limit + 1)}
    """
    rows = await pool.fetch(sql, *args)
    items = [TrialSummary.model_validate(dict(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = Cursor(last.last_activity_at, last.trial_id)
    return items, next_cursor


async def trial_view(pool: asyncpg.Pool, organisation_id: str, trial_id: UUID) -> TrialView | None:
    """The trial's current view as last recorded, or None (unknown, or another organisation's)."""
    value = await pool.fetchval(
        "SELECT view FROM trials WHERE id = $1 AND organisation_id = $2", trial_id, organisation_id
    )
    if value is None:
        return None
    return TrialView.model_validate(value)


async def trial_events(
    pool: asyncpg.Pool, organisation_id: str, trial_id: UUID
) -> list[AuditEvent] | None:
    """The audit trail in order, or None when the trial is not the organisation's."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        found = await conn.fetchval(
            "SELECT 1 FROM trials WHERE id = $1 AND organisation_id = $2",
            trial_id,
            organisation_id,
        )
        if found is None:
            return None
        rows = await conn.fetch(
            """
            SELECT seq, iteration, kind, phase, occurred_at, actor_id, on_behalf_of, data
            FROM trial_events WHERE trial_id = $1 ORDER BY seq
            """,
            trial_id,
        )
    return [AuditEvent.model_validate(dict(r)) for r in rows]


# ------------------------------------------------------------------------------------- inbox


def _valid_on(alias: str, param: str) -> str:
    return (
        f"({alias}.valid_from IS NULL OR {alias}.valid_from <= {param})"
        f" AND ({alias}.valid_to IS NULL OR {alias}.valid_to >= {param})"
    )


def _approver_why(row: asyncpg.Record, waiting_for: str) -> str:
    if row["via"] == "substitute":
        return f"{waiting_for}; you are substitute for {row['on_behalf_of']}"
    if row["via"] == "escalation":
        return f"{waiting_for}; it was escalated to you"
    return f"{waiting_for} as leader of the unit"


async def _as_approver(
    conn: PoolConnectionProxy[asyncpg.Record],
    person_id: str,
    organisation_id: str,
    today: date,
    phase: Phase,
) -> list[asyncpg.Record]:
    """Trials in `phase` the person may act on as a leader today (not their own proposals).

    One row per trial: the person's strongest standing (leader, then escalation, then
    substitute), since that is how the API lets them act.
    """
    approved_filter = ""
    if phase is Phase.PROPOSED:
        approved_filter = (
            "AND NOT ($1 = ANY(t.approved_by))"
            " AND NOT (coalesce(tp.on_behalf_of, $1) = ANY(t.approved_by))"
        )
    return await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT DISTINCT ON (t.id) t.id, t.title, t.phase, t.unit_id, t.due_at,
                   tp.via, tp.on_behalf_of
            FROM trial_people tp JOIN trials t ON t.id = tp.trial_id
            WHERE tp.person_id = $1 AND tp.phase = $4 AND tp.role = 'approver'
              AND t.organisation_id = $2 AND t.phase = $4
              AND {_valid_on("tp", "$3")}
              AND t.proposer_id <> $1
              AND tp.on_behalf_of IS DISTINCT FROM t.proposer_id
              {approved_filter}
            ORDER BY t.id,
                     CASE tp.via WHEN 'leader' THEN 0 WHEN 'escalation' THEN 1 ELSE 2 END
        ) found
        ORDER BY due_at ASC NULLS LAST, id
        LIMIT {INBOX_SECTION_LIMIT}
        """,
        person_id,
        organisation_id,
        today,
        phase.value,
    )


def _item(row: asyncpg.Record, why: str) -> InboxItem:
    return InboxItem(
        trial_id=row["id"],
        title=row["title"],
        phase=row["phase"],
        unit_id=row["unit_id"],
        due_at=row["due_at"],
        why=why,
    )


async def inbox(
    pool: asyncpg.Pool,
    person_id: str,
    organisation_id: str,
    led_units: list[str],
    *,
    now: datetime,
    today: date,
) -> Inbox:
    """What waits on the person; `led_units` are the units they lead today (with substitution)."""
    watched = await unit_subtree(pool, organisation_id, led_units)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        approvals = await _as_approver(conn, person_id, organisation_id, today, Phase.PROPOSED)
        decisions = await _as_approver(conn, person_id, organisation_id, today, Phase.DECIDING)
        taking_part = await conn.fetch(
            f"""
            SELECT DISTINCT t.id, t.title, t.phase, t.unit_id, t.due_at, t.stalled,
                   ($1 = ANY(t.evaluated_by)) AS evaluated
            FROM trial_people tp JOIN trials t ON t.id = tp.trial_id
            WHERE tp.person_id = $1 AND tp.phase IN ('running', 'evaluating')
              AND tp.role IN ('proposer', 'participant')
              AND t.organisation_id = $2
              AND ((t.phase = 'running' AND (t.stalled OR t.due_at <= $3))
                   OR (t.phase = 'evaluating' AND NOT ($1 = ANY(t.evaluated_by))))
            ORDER BY t.due_at ASC NULLS LAST, t.id
            LIMIT {2 * INBOX_SECTION_LIMIT}
            """,
            person_id,
            organisation_id,
            now + CHECK_IN_SOON,
        )
        # `stalled OR escalation_level > 0` is spelt as the partial index's predicate.
        attention = await conn.fetch(
            f"""
            SELECT id, title, phase, unit_id, due_at, stalled, escalation_level
            FROM trials
            WHERE organisation_id = $1 AND unit_id = ANY($2::text[])
              AND (stalled OR escalation_level > 0) AND NOT (phase = ANY($3::text[]))
            ORDER BY due_at ASC NULLS LAST, id
            LIMIT {INBOX_SECTION_LIMIT}
            """,
            organisation_id,
            watched,
            _ENDED,
        )
    result = Inbox(person_id=person_id)
    result.approvals = [_item(r, _approver_why(r, "waiting for your approval")) for r in approvals]
    result.decisions = [
        _item(r, _approver_why(r, "evaluated; waiting for the outcome decision")) for r in decisions
    ]
    for r in taking_part:
        if r["phase"] == Phase.RUNNING.value:
            why = (
                "stalled: no check-in for too long; a check-in restarts the clock"
                if r["stalled"]
                else "a check-in is due soon"
            )
            result.check_ins.append(_item(r, why))
        else:
            result.evaluations.append(_item(r, "the trial period is over; your evaluation is due"))
    del result.check_ins[INBOX_SECTION_LIMIT:]
    del result.evaluations[INBOX_SECTION_LIMIT:]
    for r in attention:
        reasons = []
        if r["stalled"]:
            reasons.append("stalled")
        if r["escalation_level"]:
            reasons.append(f"escalated to level {r['escalation_level']}")
        result.attention.append(
            _item(r, f"{' and '.join(reasons)} in {r['unit_id']}, under your leadership")
        )
    return result
