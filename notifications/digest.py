"""The weekly digest: per leader, what waits on them; nothing at all for a leader with nothing.

Each trial appears once per leader, in the first section it fits:
- escalations: an open step of the trial was escalated to a unit the leader leads today
  (directly, or as a substitute whose period covers today);
- approvals: the trial is proposed, the leader may approve it today (trial_people, role approver,
  valid today), has not approved it (nor has the leader they stand in for), and did not propose it;
- stalled: the trial is stalled, in a unit the leader leads today or in any unit below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from schemas.notifications import (
    DigestApproval,
    DigestEscalation,
    DigestRequest,
    DigestResult,
    DigestStalled,
    LeaderDigest,
)
from store import outbox
from store.directory_queries import MAX_TREE_DEPTH


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


_LEADERS = """
-- Who leads which unit on $1: leaders, and substitutes whose period covers the day.
SELECT l.person_id, l.unit_id, p.organisation_id
FROM unit_leaders l JOIN people p ON p.id = l.person_id
WHERE ($2::text[] IS NULL OR p.organisation_id = ANY($2::text[]))
UNION
SELECT s.substitute_id, l.unit_id, p.organisation_id
FROM substitutes s
JOIN unit_leaders l ON l.person_id = s.leader_id
JOIN people p ON p.id = s.substitute_id
JOIN units u ON u.id = l.unit_id AND u.organisation_id = p.organisation_id
WHERE s.valid_from <= $1 AND s.valid_to >= $1
  AND ($2::text[] IS NULL OR p.organisation_id = ANY($2::text[]))
"""

_APPROVALS = """
SELECT DISTINCT tp.person_id, t.organisation_id, t.id AS trial_id, t.due_at, t.last_activity_at
FROM trial_people tp
JOIN trials t ON t.id = tp.trial_id
JOIN people p ON p.id = tp.person_id AND p.organisation_id = t.organisation_id
WHERE tp.role = 'approver' AND t.phase = 'proposed'
  AND (tp.valid_from IS NULL OR tp.valid_from <= $1)
  AND (tp.valid_to IS NULL OR tp.valid_to >= $1)
  AND tp.person_id <> t.proposer_id
  AND tp.on_behalf_of IS DISTINCT FROM t.proposer_id
  AND NOT tp.person_id = ANY(t.approved_by)
  AND NOT COALESCE(tp.on_behalf_of, '') = ANY(t.approved_by)
  AND ($2::text[] IS NULL OR t.organisation_id = ANY($2::text[]))
ORDER BY t.due_at NULLS LAST, t.last_activity_at, t.id
"""

_ESCALATED = """
SELECT t.organisation_id, t.id AS trial_id, c.key AS step, (c.value->>'level')::int AS level,
       c.value->'escalated_to_units' AS units
FROM trials t, jsonb_each(t.view->'clocks') c
WHERE COALESCE((t.view->>'closed')::boolean, false) = false
  AND COALESCE((c.value->>'level')::int, 0) > 0
  AND ($1::text[] IS NULL OR t.organisation_id = ANY($1::text[]))
ORDER BY t.last_activity_at, t.id
"""

_STALLED = """
WITH RECURSIVE led(person_id, unit_id) AS (
    SELECT person_id, unit_id FROM unnest($1::text[], $2::text[]) AS l(person_id, unit_id)
), tree(person_id, unit_id, depth) AS (
    SELECT person_id, unit_id, 0 FROM led
    UNION
    SELECT tree.person_id, u.id, tree.depth + 1
    FROM tree JOIN units u ON u.parent_id = tree.unit_id
    WHERE tree.depth < $4
)
SELECT DISTINCT tree.person_id, t.organisation_id, t.id AS trial_id, t.unit_id,
       COALESCE(t.view->'last_check_in'->>'at',
                t.view->'clocks'->'check_in'->>'started_at') AS since,
       t.last_activity_at
FROM tree JOIN trials t ON t.unit_id = tree.unit_id
WHERE t.stalled AND COALESCE((t.view->>'closed')::boolean, false) = false
  AND ($3::text[] IS NULL OR t.organisation_id = ANY($3::text[]))
ORDER BY t.last_activity_at, t.id
"""


async def compute_digests(
    pool: asyncpg.Pool, on: date, week: str, organisations: Sequence[str] | None = None
) -> tuple[list[LeaderDigest], int]:
    """(the digests of leaders with something pending, how many leaders were considered)."""
    orgs = list(organisations) if organisations is not None else None
    led_rows = await pool.fetch(_LEADERS, on, orgs)
    leads: dict[str, set[str]] = {}
    org_of: dict[str, str] = {}
    for r in led_rows:
        leads.setdefault(r["person_id"], set()).add(r["unit_id"])
        org_of[r["person_id"]] = r["organisation_id"]

    digests: dict[str, LeaderDigest] = {}
    listed: dict[str, set[Any]] = {}

    def digest_of(person: str, organisation: str) -> LeaderDigest:
        if person not in digests:
            digests[person] = LeaderDigest(
                organisation_id=organisation, person_id=person, week=week
            )
            listed[person] = set()
        return digests[person]

    for r in await pool.fetch(_ESCALATED, orgs):
        units = set(r["units"] or [])
        for person, led in leads.items():
            if org_of[person] != r["organisation_id"] or not units & led:
                continue
            digest = digest_of(person, r["organisation_id"])
            if r["trial_id"] not in listed[person]:
                listed[person].add(r["trial_id"])
                digest.escalations.append(
                    DigestEscalation(trial_id=r["trial_id"], step=r["step"], level=r["level"])
                )

    for r in await pool.fetch(_APPROVALS, on, orgs):
        digest = digest_of(r["person_id"], r["organisation_id"])
        if r["trial_id"] not in listed[r["person_id"]]:
            listed[r["person_id"]].add(r["trial_id"])
            digest.approvals.append(DigestApproval(trial_id=r["trial_id"], due_at=r["due_at"]))

    pairs = [(person, unit) for person, units in leads.items() for unit in sorted(units)]
    for r in await pool.fetch(
        _STALLED,
        [p for p, _ in pairs],
        [u for _, u in pairs],
        orgs,
        MAX_TREE_DEPTH,
    ):
        digest = digest_of(r["person_id"], r["organisation_id"])
        if r["trial_id"] not in listed[r["person_id"]]:
            listed[r["person_id"]].add(r["trial_id"])
            digest.stalled.append(
                DigestStalled(trial_id=r["trial_id"], unit_id=r["unit_id"], since=r["since"])
            )

    considered = len(set(leads) | set(digests))
    found = [d for _, d in sorted(digests.items()) if not d.empty]
    return found, considered


async def send_weekly_digests(pool: asyncpg.Pool, request: DigestRequest) -> DigestResult:
    """Enqueue this week's digests in the outbox (keyed per leader and week: runs once a week)."""
    digests, considered = await compute_digests(
        pool, request.on, request.week, request.organisations
    )
    enqueued = already = 0
    for digest in digests:
        if await outbox.enqueue_digest(pool, digest):
            enqueued += 1
        else:
            already += 1
    return DigestResult(
        week=request.week,
        leaders_considered=considered,
        digests_enqueued=enqueued,
        already_enqueued=already,
    )
