"""Read-only directory look-ups for activities and the API.

Every look-up is scoped to one organisation where it takes one, so a wrong or forged id from another
tenant finds nothing instead of someone else's leaders. Results are sorted, so an activity that is
retried returns the same answer and workflow histories stay deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel, ConfigDict, Field

from schemas.directory import EligibleApprover, EscalationTarget
from schemas.ids import OrganisationId, PersonId, UnitId
from schemas.policy import Policy
from schemas.trial import EscalationQuery, Step

# A pool or a connection (inside a transaction): the channel look-ups run in both.
Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

MAX_TREE_DEPTH = 100  # far deeper than any real organisation; bounds the walk up the tree

# Steps done by employees escalate from their own unit's leaders; steps done by leaders start
# one unit further up, since the unit's own leaders are the ones who are late.
_STARTS_AT_PARENT = frozenset({Step.APPROVAL, Step.DECISION})


class Contact(BaseModel):
    """How to reach a person when a message is sent: looked up then, never kept in history."""

    model_config = ConfigDict(frozen=True)

    id: PersonId
    organisation_id: OrganisationId
    name: str
    email: str
    locale: str


class PersonRecord(Contact):
    """A person as the directory holds them, with the units they belong to and lead."""

    admin: bool
    units: list[UnitId]
    leads: list[UnitId]


async def organisation_policy(pool: asyncpg.Pool, organisation_id: str) -> Policy | None:
    """The organisation's policy, or None for an unknown organisation."""
    value = await pool.fetchval("SELECT policy FROM organisations WHERE id = $1", organisation_id)
    if value is None:
        return None
    return Policy.model_validate(value)


async def person(pool: asyncpg.Pool, person_id: str) -> PersonRecord | None:
    """A person with their memberships and the units they lead, or None."""
    record = await pool.fetchrow(
        """
        SELECT p.id, p.organisation_id, p.name, p.email, p.locale, p.admin,
               ARRAY(SELECT m.unit_id FROM unit_members m
                     WHERE m.person_id = p.id ORDER BY m.unit_id) AS units,
               ARRAY(SELECT l.unit_id FROM unit_leaders l
                     WHERE l.person_id = p.id ORDER BY l.unit_id) AS leads
        FROM people p WHERE p.id = $1
        """,
        person_id,
    )
    if record is None:
        return None
    return PersonRecord.model_validate(dict(record))


async def eligible_approvers(
    pool: asyncpg.Pool, organisation_id: str, unit_id: str, on: date
) -> list[EligibleApprover]:
    """The unit's leaders and their substitutes whose period has not ended before `on`.

    Substitutes come with their period, because the workflow checks validity on the day someone
    acts, which may be weeks after this look-up.
    """
    leaders = await pool.fetch(
        """
        SELECT l.person_id
        FROM unit_leaders l
        JOIN units u ON u.id = l.unit_id AND u.organisation_id = $1
        JOIN people p ON p.id = l.person_id AND p.organisation_id = $1
        WHERE l.unit_id = $2
        ORDER BY l.person_id
        """,
        organisation_id,
        unit_id,
    )
    leader_ids = [r["person_id"] for r in leaders]
    substitutes = await pool.fetch(
        """
        SELECT s.leader_id, s.substitute_id, s.valid_from, s.valid_to
        FROM substitutes s
        JOIN people p ON p.id = s.substitute_id AND p.organisation_id = $1
        WHERE s.leader_id = ANY($2::text[]) AND s.valid_to >= $3
        ORDER BY s.leader_id, s.valid_from, s.substitute_id
        """,
        organisation_id,
        leader_ids,
        on,
    )
    result = [EligibleApprover(person_id=leader, via="leader") for leader in leader_ids]
    result.extend(
        EligibleApprover(
            person_id=r["substitute_id"],
            via="substitute",
            on_behalf_of=r["leader_id"],
            valid_from=r["valid_from"],
            valid_to=r["valid_to"],
        )
        for r in substitutes
    )
    return result


async def escalation_target(pool: asyncpg.Pool, query: EscalationQuery) -> EscalationTarget | None:
    """Rung `query.level` of the ladder above the trial's unit, or None when the ladder is over.

    Rungs are the units on the way up that have leaders (leaderless units are passed by). Rung 1
    is the trial's own unit for check-in and evaluation, its parent for approval and decision. The
    walk never loops: it ends at a repeated unit, and a rung in `already_visited` ends the ladder
    rather than sending the step back to someone who already had it. A leader who is absent on
    `query.on` (a substitute period covers that day) is replaced by their substitute(s).
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        chain = await conn.fetch(
            """
            WITH RECURSIVE chain(id, parent_id, depth, path) AS (
                SELECT u.id, u.parent_id, 0, ARRAY[u.id]
                FROM units u WHERE u.id = $2 AND u.organisation_id = $1
                UNION ALL
                SELECT p.id, p.parent_id, c.depth + 1, c.path || p.id
                FROM chain c
                JOIN units p ON p.id = c.parent_id AND p.organisation_id = $1
                WHERE NOT p.id = ANY(c.path) AND c.depth < $3
            )
            SELECT id FROM chain ORDER BY depth
            """,
            query.organisation_id,
            query.unit_id,
            MAX_TREE_DEPTH,
        )
        units = [r["id"] for r in chain]
        if query.step in _STARTS_AT_PARENT:
            units = units[1:]
        leader_rows = await conn.fetch(
            """
            SELECT l.unit_id, l.person_id
            FROM unit_leaders l
            JOIN people p ON p.id = l.person_id AND p.organisation_id = $1
            WHERE l.unit_id = ANY($2::text[])
            ORDER BY l.unit_id, l.person_id
            """,
            query.organisation_id,
            units,
        )
        leaders: dict[str, list[str]] = {}
        for r in leader_rows:
            leaders.setdefault(r["unit_id"], []).append(r["person_id"])

        rung = 0
        target: str | None = None
        for unit in units:
            if unit not in leaders:
                continue
            rung += 1
            if rung == query.level:
                target = unit
                break
        if target is None or target in query.already_visited:
            return None

        absences = await conn.fetch(
            """
            SELECT s.leader_id, s.substitute_id, s.valid_from, s.valid_to
            FROM substitutes s
            JOIN people p ON p.id = s.substitute_id AND p.organisation_id = $1
            WHERE s.leader_id = ANY($2::text[]) AND s.valid_from <= $3 AND s.valid_to >= $3
            ORDER BY s.leader_id, s.substitute_id, s.valid_from
            """,
            query.organisation_id,
            leaders[target],
            query.on,
        )

    covering: dict[str, list[asyncpg.Record]] = {}
    for r in absences:
        covering.setdefault(r["leader_id"], []).append(r)
    recipients: list[EligibleApprover] = []
    for leader in leaders[target]:
        if leader not in covering:
            recipients.append(EligibleApprover(person_id=leader, via="escalation"))
            continue
        recipients.extend(
            EligibleApprover(
                person_id=r["substitute_id"],
                via="substitute",
                on_behalf_of=leader,
                valid_from=r["valid_from"],
                valid_to=r["valid_to"],
            )
            for r in covering[leader]
        )
    return EscalationTarget(unit_id=target, level=query.level, recipients=recipients)


async def units_led_by(pool: asyncpg.Pool, person_id: str, on: date) -> list[str]:
    """Units the person leads, directly or as a substitute whose period covers `on`."""
    rows = await pool.fetch(
        """
        SELECT l.unit_id FROM unit_leaders l WHERE l.person_id = $1
        UNION
        SELECT l.unit_id
        FROM substitutes s
        JOIN unit_leaders l ON l.person_id = s.leader_id
        JOIN people me ON me.id = s.substitute_id
        JOIN units u ON u.id = l.unit_id AND u.organisation_id = me.organisation_id
        WHERE s.substitute_id = $1 AND s.valid_from <= $2 AND s.valid_to >= $2
        ORDER BY 1
        """,
        person_id,
        on,
    )
    return [r["unit_id"] for r in rows]


async def is_member(pool: asyncpg.Pool, person_id: str, unit_id: str) -> bool:
    """True when the person is listed as a member of the unit (leading it is not membership)."""
    value = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM unit_members WHERE person_id = $1 AND unit_id = $2)",
        person_id,
        unit_id,
    )
    return bool(value)


class TeamsChannel(BaseModel):
    """The Teams webhook that serves a unit: its own, the nearest ancestor's, or the org's."""

    model_config = ConfigDict(frozen=True)

    owner: str  # "unit:<id>" or "organisation:<id>"
    url: str


class Webhook(BaseModel):
    model_config = ConfigDict(frozen=True)

    organisation_id: OrganisationId
    id: str
    url: str
    secret: str = Field(repr=False)
    events: list[str]
    active: bool

    def wants(self, event_kind: str) -> bool:
        return self.active and (not self.events or event_kind in self.events)


async def contacts(pool: Executor, person_ids: Iterable[str]) -> dict[str, Contact]:
    """Name, address and locale of each person still in the directory (erased ones are absent)."""
    rows = await pool.fetch(
        "SELECT id, organisation_id, name, email, locale FROM people WHERE id = ANY($1::text[])",
        sorted(set(person_ids)),
    )
    return {r["id"]: Contact.model_validate(dict(r)) for r in rows}


async def unit_names(pool: Executor, unit_ids: Iterable[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT id, name FROM units WHERE id = ANY($1::text[])", sorted(set(unit_ids))
    )
    return {r["id"]: r["name"] for r in rows}


async def unit_leader_ids(pool: Executor, unit_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT person_id FROM unit_leaders WHERE unit_id = $1 ORDER BY person_id", unit_id
    )
    return [r["person_id"] for r in rows]


async def teams_channel(pool: Executor, organisation_id: str, unit_id: str) -> TeamsChannel | None:
    """The nearest Teams webhook URL up the unit tree from `unit_id`, else the organisation's."""
    row = await pool.fetchrow(
        """
        WITH RECURSIVE chain(id, parent_id, url, depth, path) AS (
            SELECT u.id, u.parent_id, u.teams_webhook_url, 0, ARRAY[u.id]
            FROM units u WHERE u.id = $2 AND u.organisation_id = $1
            UNION ALL
            SELECT p.id, p.parent_id, p.teams_webhook_url, c.depth + 1, c.path || p.id
            FROM chain c
            JOIN units p ON p.id = c.parent_id AND p.organisation_id = $1
            WHERE NOT p.id = ANY(c.path) AND c.depth < $3
        )
        SELECT owner, url FROM (
            SELECT 'unit:' || id AS owner, url, depth FROM chain WHERE url IS NOT NULL
            UNION ALL
            SELECT 'organisation:' || id, teams_webhook_url, $3 + 1
            FROM organisations WHERE id = $1 AND teams_webhook_url IS NOT NULL
        ) found
        ORDER BY depth LIMIT 1
        """,
        organisation_id,
        unit_id,
        MAX_TREE_DEPTH,
    )
    return None if row is None else TeamsChannel(owner=row["owner"], url=row["url"])


async def webhooks(pool: Executor, organisation_id: str) -> list[Webhook]:
    """The organisation's webhook subscriptions, active or not, by id."""
    rows = await pool.fetch(
        """
        SELECT organisation_id, id, url, secret, events, active
        FROM webhook_subscriptions WHERE organisation_id = $1 ORDER BY id
        """,
        organisation_id,
    )
    return [Webhook.model_validate(dict(r)) for r in rows]
