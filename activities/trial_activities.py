"""Side effects of the trial workflow: directory look-ups and recording events.

Each activity is idempotent; bad input fails it as non-retryable so a workflow never retries forever
on data that cannot become valid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from metrics.events import observe_recorded
from metrics.logging import log_event
from schemas.directory import EligibleApprover, EscalationTarget
from schemas.errors import RefusalType
from schemas.policy import Policy
from schemas.trial import ApproverQuery, EscalationQuery, RecordEventInput, RecordEventsInput
from store import directory_queries, read_model

log = logging.getLogger("provehandling.activities")


class TrialActivities:
    """Activities bound to one connection pool (one per worker process)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="load_policy")
    async def load_policy(self, organisation_id: str) -> Policy:
        policy = await directory_queries.organisation_policy(self.pool, organisation_id)
        if policy is None:
            raise ApplicationError(
                f"organisation_id: unknown organisation {organisation_id!r}",
                type=RefusalType.NOT_FOUND.value,
                non_retryable=True,
            )
        return policy

    @activity.defn(name="resolve_approvers")
    async def resolve_approvers(self, query: ApproverQuery) -> list[EligibleApprover]:
        return await directory_queries.eligible_approvers(
            self.pool, query.organisation_id, query.unit_id, query.on
        )

    @activity.defn(name="resolve_escalation")
    async def resolve_escalation(self, query: EscalationQuery) -> EscalationTarget | None:
        return await directory_queries.escalation_target(self.pool, query)

    @activity.defn(name="record_event")
    async def record_event(self, item: RecordEventInput) -> bool:
        """One event: record_events of a batch of one (histories from before batching call it)."""
        if item.event.trial_id != item.view.trial_id:
            raise ApplicationError(
                "event.trial_id: does not match the view's trial",
                type=RefusalType.INVALID.value,
                non_retryable=True,
            )
        [written] = await self.record_events(RecordEventsInput(events=[item.event], view=item.view))
        return written

    @activity.defn(name="record_events")
    async def record_events(self, item: RecordEventsInput) -> list[bool]:
        """All the events of one command or timer step in one transaction (see read_model)."""
        if any(event.trial_id != item.view.trial_id for event in item.events):
            raise ApplicationError(
                "events[].trial_id: does not match the view's trial",
                type=RefusalType.INVALID.value,
                non_retryable=True,
            )
        written = await read_model.record_events(self.pool, item)
        for event, first_write in zip(item.events, written, strict=True):
            if first_write:  # a retried activity neither logs nor counts again
                log_event(log, event, item.view.organisation_id, item.view.workflow_id)
                await observe_recorded(self.pool, RecordEventInput(event=event, view=item.view))
        return written

    def all(self) -> list[Callable[..., Any]]:
        # record_event stays registered: histories from before batching still schedule it
        return [
            self.load_policy,
            self.resolve_approvers,
            self.resolve_escalation,
            self.record_event,
            self.record_events,
        ]
