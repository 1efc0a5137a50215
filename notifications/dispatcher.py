"""The dispatcher: a worker-side loop that delivers the outbox, each row at most once once sent.

Why a loop and not activities: the trial workflow must never wait on a mail server, and the outbox
rows already exist durably (written with the event). The loop wakes on `NOTIFY provehandling_outbox`
and polls every few seconds; it claims due rows with FOR UPDATE SKIP LOCKED and a lease, sends,
and records the outcome under its claim token. A retry waits with exponential back-off and jitter;
after `max_attempts` the row is failed, visible in the API and counted, and the trial goes on.

The one window left is a crash after the receiver accepted a message and before `sent` is recorded:
the lease expires and the row is sent again, with the same Message-ID (e-mail) or Idempotency-Key
and delivery id (webhooks) so the receiver can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from notifications.channels import Channels, DeliveryError
from notifications.content import (
    WORDS,
    MissingData,
    digest_context,
    email_message,
    load_event,
    message_id_for,
    teams_card,
    trial_context,
    webhook_body,
)
from notifications.render import Renderer, format_when, join_names
from schemas.notifications import Channel, ExtraKind, LeaderDigest
from store import directory_queries, outbox
from store.outbox import ClaimedNotification, ClaimedWebhook, Table
from workers.settings import Settings

log = logging.getLogger("provehandling.notifications")

Outcome = str  # "sent" | "retry" | "failed"
STOP_GRACE = 5.0  # seconds a drain in progress may go on after stop


class DeliveryStats:
    """Counters of delivery outcomes by channel, in this process.

    Listeners are called with (channel, outcome) on every outcome, which is where Prometheus
    counters hook in later without touching the dispatcher.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.listeners: list[Callable[[str, str], None]] = []

    def record(self, channel: str, outcome: Outcome) -> None:
        self.counts[(channel, outcome)] += 1
        for listener in self.listeners:
            try:
                listener(channel, outcome)
            except Exception:  # a broken metrics hook must not stop deliveries
                log.warning("delivery stats listener failed", exc_info=True)

    def get(self, channel: str, outcome: Outcome) -> int:
        return self.counts[(channel, outcome)]


@dataclass(frozen=True)
class Sent:
    """What a delivered row records: an e-mail's Message-ID, a webhook's HTTP status."""

    message_id: str | None = None
    status_code: int | None = None


def _what(row: ClaimedNotification | ClaimedWebhook) -> str:
    """The row in a log line: what went to whom."""
    if isinstance(row, ClaimedNotification):
        return f"{row.kind} to {row.recipient_id}"
    return f"{row.event_kind} #{row.seq} of {row.trial_id} to webhook {row.subscription_id}"


@dataclass
class DrainReport:
    """What one drain did, by outcome and channel."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, channel: str, outcome: Outcome) -> None:
        self.counts[(channel, outcome)] += 1

    def total(self, outcome: Outcome) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    @property
    def sent(self) -> int:
        return self.total("sent")

    @property
    def retried(self) -> int:
        return self.total("retry")

    @property
    def failed(self) -> int:
        return self.total("failed")


class Dispatcher:
    """Delivers outbox rows (e-mail, Teams) and webhook deliveries; see the module docstring.

    `organisations` limits it to some tenants (a dispatcher per shard, or a test's own org).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        channels: Channels,
        *,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
        backoff_max_seconds: float | None = None,
        jitter: float = 0.2,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
        batch_size: int = 20,
        organisations: Sequence[str] | None = None,
        stats: DeliveryStats | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.channels = channels
        self.max_attempts = max_attempts or settings.dispatcher_max_attempts
        self.backoff_seconds = (
            settings.dispatcher_backoff_seconds if backoff_seconds is None else backoff_seconds
        )
        self.backoff_max_seconds = (
            settings.dispatcher_backoff_max_seconds
            if backoff_max_seconds is None
            else backoff_max_seconds
        )
        self.jitter = jitter
        self.lease_seconds = lease_seconds or settings.dispatcher_lease_seconds
        self.poll_seconds = poll_seconds or settings.dispatcher_poll_seconds
        self.batch_size = batch_size
        self.organisations = list(organisations) if organisations is not None else None
        self.stats = stats or DeliveryStats()
        self.renderer = renderer or Renderer()

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: on every NOTIFY, and every `poll_seconds` regardless."""
        wake = asyncio.Event()
        listener: Any = None

        def on_notify(*_: object) -> None:
            wake.set()

        log.info("notification dispatcher started")
        try:
            while not stop.is_set():
                if listener is None or listener.is_closed():
                    listener = await self._listen(listener, on_notify)
                wake.clear()
                await self._drain_until(stop)
                waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(
                        waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            await self._unlisten(listener, on_notify)
            log.info("notification dispatcher stopped")

    async def _drain_until(self, stop: asyncio.Event) -> None:
        """One drain; on stop it gets `STOP_GRACE` seconds to finish what it holds.

        A drain cut short leaves its rows claimed; their leases expire and they go out again
        (same Message-ID / Idempotency-Key), so stopping never loses a message.
        """
        drain = asyncio.ensure_future(self.drain_once())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({drain, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                await asyncio.wait({drain}, timeout=STOP_GRACE)
            if not drain.done():
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
                return
            drain.result()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("dispatcher could not drain the outbox: %s", exc)
        except Exception:
            log.exception("dispatcher failed while draining the outbox")
        finally:
            stopping.cancel()

    async def _listen(self, previous: Any, callback: Callable[..., None]) -> Any:
        """A pooled connection that LISTENs; without one the loop still polls."""
        await self._unlisten(previous, callback)
        try:
            conn = await self.pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("dispatcher cannot LISTEN (polling instead): %s", exc)
            return None
        try:
            await conn.add_listener(outbox.OUTBOX_CHANNEL, callback)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("dispatcher cannot LISTEN (polling instead): %s", exc)
            await self.pool.release(conn)
            return None
        return conn

    async def _unlisten(self, conn: Any, callback: Callable[..., None]) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(outbox.OUTBOX_CHANNEL, callback)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def drain_once(self) -> DrainReport:
        """Deliver everything due now, then return; retries scheduled now wait for a later drain.

        Webhook deliveries of one (subscription, trial) go one per round, in seq order.
        """
        report = DrainReport()
        cutoff = await self.pool.fetchval("SELECT clock_timestamp()")
        while True:
            notes = await outbox.claim_notifications(
                self.pool,
                limit=self.batch_size,
                lease_seconds=self.lease_seconds,
                due_before=cutoff,
                organisations=self.organisations,
            )
            hooks = await outbox.claim_webhooks(
                self.pool,
                limit=self.batch_size,
                lease_seconds=self.lease_seconds,
                due_before=cutoff,
                organisations=self.organisations,
            )
            if not notes and not hooks:
                return report
            outcomes = await asyncio.gather(
                *(self._deliver_notification(n) for n in notes),
                *(self._deliver_webhook(h) for h in hooks),
            )
            for channel, outcome in outcomes:
                report.add(channel, outcome)

    # --- one delivery ------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: doubling from `backoff_seconds`, with jitter."""
        base = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** max(0, attempt - 1))
        return max(0.0, base * random.uniform(1 - self.jitter, 1 + self.jitter))

    async def _deliver_notification(self, row: ClaimedNotification) -> tuple[str, Outcome]:
        async def send() -> Sent:
            if row.channel is Channel.TEAMS:
                await self._send_teams(row)
                return Sent()
            return Sent(message_id=await self._send_email(row))

        return await self._deliver("notifications", row, row.channel.value, send)

    async def _deliver_webhook(self, row: ClaimedWebhook) -> tuple[str, Outcome]:
        async def send() -> Sent:
            hooks = await directory_queries.webhooks(self.pool, row.organisation_id)
            hook = next((h for h in hooks if h.id == row.subscription_id), None)
            if hook is None or not hook.active:
                raise DeliveryError(
                    f"webhook subscription {row.subscription_id!r} is removed or inactive",
                    retryable=False,
                )
            body = await webhook_body(self.pool, row)
            status_code = await self.channels.webhooks.post_event(
                hook.url,
                hook.secret,
                body,
                event_kind=row.event_kind,
                delivery_id=row.delivery_id,
            )
            return Sent(status_code=status_code)

        return await self._deliver("webhook_deliveries", row, Channel.WEBHOOK.value, send)

    async def _deliver(
        self,
        table: Table,
        row: ClaimedNotification | ClaimedWebhook,
        channel: str,
        send: Callable[[], Awaitable[Sent]],
    ) -> tuple[str, Outcome]:
        """One attempt at a claimed row: give up past `max_attempts`, else `send` and record it.

        A DeliveryError is retried or failed as it says; MissingData fails for good.
        """
        try:
            if row.attempts > self.max_attempts:
                raise DeliveryError(
                    f"gave up after {row.attempts - 1} attempts (the last one never finished)",
                    retryable=False,
                )
            sent = await send()
        except DeliveryError as error:
            return channel, await self._failed(table, row, channel, error)
        except MissingData as error:
            failure = DeliveryError(str(error), retryable=False)
            return channel, await self._failed(table, row, channel, failure)
        except Exception as error:  # a bug or an outage we did not foresee: retry, then fail
            failure = DeliveryError(f"{type(error).__name__}: {error}")
            return channel, await self._failed(table, row, channel, failure)
        if await outbox.mark_sent(
            self.pool,
            table,
            row.id,
            row.claim_token,
            message_id=sent.message_id,
            status_code=sent.status_code,
        ):
            if isinstance(row, ClaimedNotification):
                log.info("sent %s by %s", _what(row), channel)
            else:
                log.info("sent %s", _what(row))
        self.stats.record(channel, "sent")
        return channel, "sent"

    async def _failed(
        self,
        table: Table,
        row: ClaimedNotification | ClaimedWebhook,
        channel: str,
        error: DeliveryError,
    ) -> Outcome:
        what = _what(row)
        if error.retryable and row.attempts < self.max_attempts:
            delay = self.backoff(row.attempts)
            await outbox.mark_retry(
                self.pool,
                table,
                row.id,
                row.claim_token,
                delay_seconds=delay,
                error=error.message,
                status_code=error.status_code,
            )
            log.warning(
                "%s by %s failed (attempt %d of %d), retrying in %.1f s: %s",
                what,
                channel,
                row.attempts,
                self.max_attempts,
                delay,
                error.message,
            )
            self.stats.record(channel, "retry")
            return "retry"
        await outbox.mark_failed(
            self.pool,
            table,
            row.id,
            row.claim_token,
            error=error.message,
            status_code=error.status_code,
        )
        log.warning(
            "%s by %s failed for good after %d attempt(s): %s",
            what,
            channel,
            row.attempts,
            error.message,
        )
        self.stats.record(channel, "failed")
        return "failed"

    # --- the channels ------------------------------------------------------------------------

    async def _send_email(self, row: ClaimedNotification) -> str:
        found = await directory_queries.contacts(self.pool, [row.recipient_id])
        person = found.get(row.recipient_id)
        if person is None:
            raise DeliveryError(
                f"recipient {row.recipient_id!r} is no longer in the directory (erased?)",
                retryable=False,
            )
        if not person.email.strip():
            raise DeliveryError(
                f"recipient {row.recipient_id!r} has no e-mail address", retryable=False
            )
        locale = person.locale if person.locale in ("da", "en") else "da"
        base_url = self.settings.public_base_url
        if row.kind == ExtraKind.DIGEST.value:
            digest = LeaderDigest.model_validate(row.payload or {})
            context = await digest_context(
                self.pool, digest, locale=locale, recipient=person, base_url=base_url
            )
        else:
            if row.trial_id is None or row.event_seq is None:
                raise MissingData(f"notification {row.id} names no trial event")
            facts = await load_event(self.pool, row.trial_id, row.event_seq)
            context = await trial_context(
                self.pool,
                facts,
                kind=row.kind,
                locale=locale,
                recipient_id=row.recipient_id,
                base_url=base_url,
            )
        rendered = self.renderer.render(row.kind, locale, context)
        message_id = message_id_for(row.idempotency_key, self.settings.mail_from)
        message = email_message(
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            to=person,
            mail_from=self.settings.mail_from,
            message_id=message_id,
            idempotency_key=row.idempotency_key,
            locale=locale,
        )
        await self.channels.email.send(message)
        return message_id

    async def _send_teams(self, row: ClaimedNotification) -> None:
        if not row.target:
            raise DeliveryError("Teams delivery without a webhook URL", retryable=False)
        if row.trial_id is None or row.event_seq is None:
            raise MissingData(f"notification {row.id} names no trial event")
        locale = self.settings.teams_locale if self.settings.teams_locale in WORDS else "da"
        words = WORDS[locale]
        facts = await load_event(self.pool, row.trial_id, row.event_seq)
        context = await trial_context(
            self.pool,
            facts,
            kind=row.kind,
            locale=locale,
            recipient_id=None,
            base_url=self.settings.public_base_url,
        )
        subject, summary = self.renderer.headline(row.kind, locale, context)
        step = context["step"]
        escalation = context["escalation"]
        deadline = (escalation or {}).get("new_deadline") or (step or {}).get("due")
        card_facts = [
            (words["trial"], context["trial"]["title"]),
            (words["unit"], context["trial"]["unit_name"]),
            (words["people"], join_names(context["people"], locale)),
        ]
        if escalation:
            card_facts.append((words["level"], str(escalation["level"])))
        if deadline:
            card_facts.append((words["deadline"], format_when(deadline, locale)))
        card = teams_card(
            subject=subject,
            summary=summary,
            facts=card_facts,
            link=context["link"],
            open_label=words["open"],
        )
        await self.channels.teams.post_card(row.target, card)
