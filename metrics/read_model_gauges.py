"""Gauges computed from the PostgreSQL read model and outbox, refreshed by every worker replica.

They come from the database and not from process memory, so two workers report the same numbers
whichever of them recorded the events. A few aggregate queries per round (GROUP BY
organisation, phase or channel on indexed columns) keep this cheap at 100,000 trials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from metrics import domain

log = logging.getLogger("provehandling.metrics")

TRIALS_BY_PHASE = """
SELECT organisation_id, phase, count(*) AS n FROM trials GROUP BY organisation_id, phase
"""
# Stalled: a running trial without a check-in for stall_after (the workflow sets the flag).
# Past SLA: waiting for approval after the approval deadline (due_at mirrors approval_due while
# the trial is proposed, see store/read_model.due_at).
ATTENTION = """
SELECT organisation_id,
       count(*) FILTER (WHERE stalled) AS stalled,
       count(*) FILTER (WHERE phase = 'proposed' AND due_at < $1) AS past_sla
FROM trials
WHERE stalled OR (phase = 'proposed' AND due_at < $1)
GROUP BY organisation_id
"""
ORGANISATIONS = "SELECT id FROM organisations"
OUTBOX_BY_CHANNEL = """
SELECT channel, count(*) AS n, min(created_at) AS oldest
FROM notifications WHERE status IN ('pending', 'sending') GROUP BY 1
"""
WEBHOOK_OUTBOX = """
SELECT 'webhook' AS channel, count(*) AS n, min(created_at) AS oldest
FROM webhook_deliveries WHERE status IN ('pending', 'sending')
"""


@dataclass
class Snapshot:
    """What one refresh read; applied to the gauges in one synchronous step."""

    now: datetime
    trials: dict[tuple[str, str], int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    past_sla: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)


class ReadModelGauges:
    """Sets the DB-derived gauges of metrics.domain from one pool.

    The worker runs it: `asyncio.create_task(ReadModelGauges(pool).run(stop, interval))`.
    """

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 10.0) -> None:
        self.pool = pool
        self.timeout = timeout

    async def read(self, now: datetime | None = None) -> Snapshot:
        """Run the aggregate queries; `now` defaults to the database's clock."""
        async with self.pool.acquire(timeout=self.timeout) as conn:
            at: datetime = now or await conn.fetchval("SELECT now()", timeout=self.timeout)
            snap = Snapshot(now=at)
            for row in await conn.fetch(TRIALS_BY_PHASE, timeout=self.timeout):
                snap.trials[(row["organisation_id"], row["phase"])] = int(row["n"])
            organisations = [r["id"] for r in await conn.fetch(ORGANISATIONS)]
            for org in organisations + [o for o, _ in snap.trials]:
                snap.stalled.setdefault(org, 0)
                snap.past_sla.setdefault(org, 0)
            for row in await conn.fetch(ATTENTION, at, timeout=self.timeout):
                snap.stalled[row["organisation_id"]] = int(row["stalled"])
                snap.past_sla[row["organisation_id"]] = int(row["past_sla"])
            snap.outbox = {channel: (0, None) for channel in domain.CHANNELS}
            for query in (OUTBOX_BY_CHANNEL, WEBHOOK_OUTBOX):
                for row in await conn.fetch(query, timeout=self.timeout):
                    if row["n"]:
                        snap.outbox[row["channel"]] = (int(row["n"]), row["oldest"])
        return snap

    @staticmethod
    def apply(snap: Snapshot) -> None:
        """Replace the gauges' values; no await in here, so no scrape sees a half-set state."""
        domain.reset_known_gauges(
            (
                domain.TRIALS,
                domain.STALLED_TRIALS,
                domain.APPROVALS_PAST_SLA,
                domain.OUTBOX_PENDING,
                domain.OUTBOX_OLDEST_AGE,
            )
        )
        for (org, phase), n in snap.trials.items():
            domain.TRIALS.labels(org, phase).set(n)
        for org, n in snap.stalled.items():
            domain.STALLED_TRIALS.labels(org).set(n)
        for org, n in snap.past_sla.items():
            domain.APPROVALS_PAST_SLA.labels(org).set(n)
        for channel, (n, oldest) in snap.outbox.items():
            domain.OUTBOX_PENDING.labels(channel).set(n)
            age = (snap.now - oldest).total_seconds() if oldest is not None else 0.0
            domain.OUTBOX_OLDEST_AGE.labels(channel).set(max(age, 0.0))
        domain.READ_MODEL_REFRESHED.set(time.time())

    async def refresh(self, now: datetime | None = None) -> Snapshot:
        """Read and apply once; raises what the database raised (the gauges keep their values)."""
        snap = await self.read(now)
        self.apply(snap)
        return snap

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Refresh every `interval` seconds until `stop` is set; a failed round is counted, logged
        and tried again at the next tick, so a database restart never stops the loop."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as error:
                domain.READ_MODEL_REFRESH_ERRORS.inc()
                log.warning("could not refresh read-model gauges: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
