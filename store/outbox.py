"""The notification outbox and webhook deliveries: what is written with an event, claimed, marked.

Rows are written in the event's transaction (record_event calls `enqueue_deliveries`), so an event
and its deliveries exist together or not at all. The dispatcher claims due rows with
`FOR UPDATE SKIP LOCKED` and a lease, so two dispatchers never hold the same row and a crashed one's
claim expires; an outcome is recorded only by the claim that holds the row (`claim_token`), and a
row marked sent or failed is never claimed again.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from schemas.notifications import (
    Channel,
    DeliveryStatus,
    ExtraKind,
    LeaderDigest,
    NotificationDelivery,
)
from schemas.trial import TrialEvent
from store import directory_queries
from store.directory_queries import Executor

OUTBOX_CHANNEL = "provehandling_outbox"  # LISTEN/NOTIFY channel the dispatcher wakes on
WEBHOOK_NAMESPACE = uuid.UUID("6f1f4a52-3c1e-4b7e-9a57-2b2f1b0d5e11")

Table = Literal["notifications", "webhook_deliveries"]


def teams_key(trial_id: str, seq: int, kind: str, url: str) -> str:
    """One Teams card per (event, kind, channel URL), whoever the people concerned are."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return f"{trial_id}:{seq}:{kind}:teams:{digest}"


def digest_key(person_id: str, week: str) -> str:
    return f"digest:{person_id}:{week}"


def webhook_delivery_id(subscription_id: str, trial_id: str, seq: int) -> uuid.UUID:
    """Stable per (subscription, trial, event): the body's `id` and the Idempotency-Key."""
    return uuid.uuid5(WEBHOOK_NAMESPACE, f"{subscription_id}:{trial_id}:{seq}")


# --- written with the event ---------------------------------------------------------------------


async def enqueue_deliveries(
    conn: Executor, event: TrialEvent, organisation_id: str, unit_id: str
) -> None:
    """Teams cards and webhook deliveries for one event, then wake the dispatcher.

    Runs inside record_event's transaction, after the e-mail rows: a retried recording writes
    nothing new (every row is keyed), and NOTIFY is only delivered when the transaction commits.
    """
    trial = str(event.trial_id)
    kinds = list(dict.fromkeys(n.kind.value for n in event.notifications))
    if kinds:
        channel = await directory_queries.teams_channel(conn, organisation_id, unit_id)
        if channel is not None:
            await conn.executemany(
                """
                INSERT INTO notifications (idempotency_key, trial_id, event_seq, organisation_id,
                                           recipient_id, kind, channel, target)
                VALUES ($1, $2, $3, $4, $5, $6, 'teams', $7)
                ON CONFLICT (idempotency_key) DO NOTHING
                """,
                [
                    (
                        teams_key(trial, event.seq, kind, channel.url),
                        event.trial_id,
                        event.seq,
                        organisation_id,
                        channel.owner,
                        kind,
                        channel.url,
                    )
                    for kind in kinds
                ],
            )
    hooks = [
        h
        for h in await directory_queries.webhooks(conn, organisation_id)
        if h.wants(event.kind.value)
    ]
    if hooks:
        await conn.executemany(
            """
            INSERT INTO webhook_deliveries (delivery_id, organisation_id, subscription_id,
                                            trial_id, seq, event_kind)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (subscription_id, trial_id, seq) DO NOTHING
            """,
            [
                (
                    webhook_delivery_id(h.id, trial, event.seq),
                    organisation_id,
                    h.id,
                    event.trial_id,
                    event.seq,
                    event.kind.value,
                )
                for h in hooks
            ],
        )
    if kinds or hooks:
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)


async def enqueue_digest(pool: asyncpg.Pool, digest: LeaderDigest) -> bool:
    """One digest row per leader and ISO week; False when this week's was already enqueued."""
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            """
            INSERT INTO notifications (idempotency_key, organisation_id, recipient_id, kind,
                                       channel, payload)
            VALUES ($1, $2, $3, $4, 'email', $5)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
            """,
            digest_key(digest.person_id, digest.week),
            digest.organisation_id,
            digest.person_id,
            ExtraKind.DIGEST.value,
            digest.model_dump(mode="json"),
        )
        if inserted is not None:
            await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return inserted is not None


# --- claimed and marked by the dispatcher -------------------------------------------------------


@dataclass(frozen=True)
class ClaimedNotification:
    """An e-mail or Teams delivery this dispatcher holds until its lease runs out."""

    id: int
    idempotency_key: str
    trial_id: uuid.UUID | None
    event_seq: int | None
    organisation_id: str
    recipient_id: str
    kind: str
    channel: Channel
    target: str | None
    payload: dict[str, Any] | None
    attempts: int
    claim_token: uuid.UUID


@dataclass(frozen=True)
class ClaimedWebhook:
    id: int
    delivery_id: uuid.UUID
    organisation_id: str
    subscription_id: str
    trial_id: uuid.UUID
    seq: int
    event_kind: str
    attempts: int
    claim_token: uuid.UUID


_CLAIM_NOTIFICATIONS = """
UPDATE notifications n
SET status = 'sending', attempts = n.attempts + 1, claim_token = $3,
    locked_until = clock_timestamp() + make_interval(secs => $2)
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE ((status = 'pending' AND next_attempt_at <= COALESCE($4, clock_timestamp()))
           OR (status = 'sending' AND locked_until <= clock_timestamp()))
      AND ($5::text[] IS NULL OR organisation_id = ANY($5::text[]))
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING n.id, n.idempotency_key, n.trial_id, n.event_seq, n.organisation_id, n.recipient_id,
          n.kind, n.channel, n.target, n.payload, n.attempts, n.claim_token
"""

# A delivery is only due when every lower seq of its (subscription, trial) is sent or failed,
# so an integration sees a trial's events in order even across retries.
_CLAIM_WEBHOOKS = """
UPDATE webhook_deliveries d
SET status = 'sending', attempts = d.attempts + 1, claim_token = $3,
    locked_until = clock_timestamp() + make_interval(secs => $2)
WHERE d.id IN (
    SELECT w.id FROM webhook_deliveries w
    WHERE ((w.status = 'pending' AND w.next_attempt_at <= COALESCE($4, clock_timestamp()))
           OR (w.status = 'sending' AND w.locked_until <= clock_timestamp()))
      AND ($5::text[] IS NULL OR w.organisation_id = ANY($5::text[]))
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.subscription_id = w.subscription_id AND p.trial_id = w.trial_id
            AND p.seq < w.seq AND p.status IN ('pending', 'sending'))
    ORDER BY w.next_attempt_at, w.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING d.id, d.delivery_id, d.organisation_id, d.subscription_id, d.trial_id, d.seq,
          d.event_kind, d.attempts, d.claim_token
"""


async def claim_notifications(
    pool: asyncpg.Pool,
    *,
    limit: int,
    lease_seconds: float,
    due_before: datetime | None = None,
    organisations: Sequence[str] | None = None,
) -> list[ClaimedNotification]:
    """Claim up to `limit` due e-mail/Teams rows (and rows whose lease expired)."""
    rows = await pool.fetch(
        _CLAIM_NOTIFICATIONS,
        limit,
        lease_seconds,
        uuid.uuid4(),
        due_before,
        list(organisations) if organisations is not None else None,
    )
    return [
        ClaimedNotification(**{**dict(r), "channel": Channel(r["channel"])})
        for r in sorted(rows, key=lambda r: r["id"])
    ]


async def claim_webhooks(
    pool: asyncpg.Pool,
    *,
    limit: int,
    lease_seconds: float,
    due_before: datetime | None = None,
    organisations: Sequence[str] | None = None,
) -> list[ClaimedWebhook]:
    """Claim up to `limit` due webhook deliveries: the next one per (subscription, trial)."""
    rows = await pool.fetch(
        _CLAIM_WEBHOOKS,
        limit,
        lease_seconds,
        uuid.uuid4(),
        due_before,
        list(organisations) if organisations is not None else None,
    )
    return [ClaimedWebhook(**dict(r)) for r in sorted(rows, key=lambda r: r["id"])]


async def mark_sent(
    pool: asyncpg.Pool,
    table: Table,
    row_id: int,
    claim_token: uuid.UUID,
    *,
    message_id: str | None = None,
    status_code: int | None = None,
) -> bool:
    """Record a delivery; False when the claim was lost (its lease expired and another took it)."""
    if table == "notifications":
        result = await pool.execute(
            """
            UPDATE notifications
            SET status = 'sent', sent_at = clock_timestamp(), locked_until = NULL,
                last_error = NULL, message_id = COALESCE($3, message_id)
            WHERE id = $1 AND claim_token = $2 AND status = 'sending'
            """,
            row_id,
            claim_token,
            message_id,
        )
    else:
        result = await pool.execute(
            """
            UPDATE webhook_deliveries
            SET status = 'sent', sent_at = clock_timestamp(), locked_until = NULL,
                last_error = NULL, last_status_code = $3
            WHERE id = $1 AND claim_token = $2 AND status = 'sending'
            """,
            row_id,
            claim_token,
            status_code,
        )
    return result.endswith(" 1")


async def mark_retry(
    pool: asyncpg.Pool,
    table: Table,
    row_id: int,
    claim_token: uuid.UUID,
    *,
    delay_seconds: float,
    error: str,
    status_code: int | None = None,
) -> bool:
    """Give the row back for another attempt after `delay_seconds`."""
    extra = ", last_status_code = $5" if table == "webhook_deliveries" else ""
    args: list[Any] = [row_id, claim_token, delay_seconds, error[:2000]]
    if table == "webhook_deliveries":
        args.append(status_code)
    result = await pool.execute(
        f"""
        UPDATE {table}
        SET status = 'pending', locked_until = NULL, last_error = $4,
            next_attempt_at = clock_timestamp() + make_interval(secs => $3){extra}
        WHERE id = $1 AND claim_token = $2 AND status = 'sending'
        """,
        *args,
    )
    return result.endswith(" 1")


async def mark_failed(
    pool: asyncpg.Pool,
    table: Table,
    row_id: int,
    claim_token: uuid.UUID,
    *,
    error: str,
    status_code: int | None = None,
) -> bool:
    """Give up on the row: it stays failed, visible and counted, and never blocks the trial."""
    extra = ", last_status_code = $4" if table == "webhook_deliveries" else ""
    args: list[Any] = [row_id, claim_token, error[:2000]]
    if table == "webhook_deliveries":
        args.append(status_code)
    result = await pool.execute(
        f"""
        UPDATE {table}
        SET status = 'failed', locked_until = NULL, last_error = $3{extra}
        WHERE id = $1 AND claim_token = $2 AND status = 'sending'
        """,
        *args,
    )
    return result.endswith(" 1")


# --- read by the API and by operators -----------------------------------------------------------


async def notifications_of(
    pool: asyncpg.Pool, trial_id: uuid.UUID, organisation_id: str | None = None
) -> list[NotificationDelivery]:
    """Every delivery of a trial's notifications and events, oldest event first.

    Pass `organisation_id` to scope it to the caller's tenant (another tenant's trial shows
    nothing). Teams URLs and webhook secrets are never part of the answer.
    """
    rows = await pool.fetch(
        """
        SELECT id, channel, kind, recipient_id, event_seq, status, attempts, last_error,
               created_at, sent_at, next_attempt_at
        FROM (
            SELECT id, channel, kind, recipient_id, event_seq, status, attempts, last_error,
                   created_at, sent_at,
                   CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,
                   organisation_id
            FROM notifications WHERE trial_id = $1
            UNION ALL
            SELECT id, 'webhook', event_kind, subscription_id, seq, status, attempts, last_error,
                   created_at, sent_at,
                   CASE WHEN status = 'pending' THEN next_attempt_at END,
                   organisation_id
            FROM webhook_deliveries WHERE trial_id = $1
        ) d
        WHERE $2::text IS NULL OR organisation_id = $2
        ORDER BY event_seq, channel, kind, recipient_id, id
        """,
        trial_id,
        organisation_id,
    )
    return [
        NotificationDelivery(
            **{**dict(r), "channel": Channel(r["channel"]), "status": DeliveryStatus(r["status"])}
        )
        for r in rows
    ]
