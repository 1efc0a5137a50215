"""Activities of the notification side: the weekly digest enqueues one outbox row per leader.

Delivery itself is not an activity: the worker's dispatcher loop sends the outbox (see
notifications/dispatcher.py), so no workflow ever waits on a mail server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity

from notifications import digest
from schemas.notifications import DigestRequest, DigestResult


class NotificationActivities:
    """Activities bound to one connection pool (one per worker process)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="send_weekly_digests")
    async def send_weekly_digests(self, request: DigestRequest) -> DigestResult:
        """Idempotent: each digest row is keyed digest:<person>:<week>, so a retry adds nothing."""
        result = await digest.send_weekly_digests(self.pool, request)
        activity.logger.info(
            "weekly digest %s: %d enqueued, %d already enqueued, %d leaders considered",
            result.week,
            result.digests_enqueued,
            result.already_enqueued,
            result.leaders_considered,
        )
        return result

    def all(self) -> list[Callable[..., Any]]:
        return [self.send_weekly_digests]
