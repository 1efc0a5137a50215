"""TrialClient: start, command and read trials through Temporal, with directory checks up front."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from schemas.commands import Actor
from schemas.errors import RefusalType, RuleViolation
from schemas.proposal import Proposal
from schemas.trial import TrialStart, TrialView
from store import directory_queries
from workflows.calendar import BusinessCalendar
from workflows.rules import check_proposal
from workflows.search_attributes import trial_search_attributes
from workflows.trial import TrialWorkflow


class TrialNotFound(LookupError):
    """No such trial in the caller's organisation (another organisation's trial looks the same)."""


@dataclass
class TrialRefused(Exception):
    """The trial refused a command; `kind` says why (forbidden, wrong phase, invalid data)."""

    kind: RefusalType
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


def workflow_id_for(trial_id: uuid.UUID | str) -> str:
    return f"trial-{trial_id}"


COMMANDS: dict[str, Any] = {
    "decide_approval": TrialWorkflow.decide_approval,
    "revise": TrialWorkflow.revise,
    "check_in": TrialWorkflow.check_in,
    "pause": TrialWorkflow.pause,
    "resume": TrialWorkflow.resume,
    "extend": TrialWorkflow.extend,
    "abort": TrialWorkflow.abort,
    "withdraw": TrialWorkflow.withdraw,
    "evaluate": TrialWorkflow.evaluate,
    "decide_outcome": TrialWorkflow.decide_outcome,
    "answer_follow_up": TrialWorkflow.answer_follow_up,
}


def _refusal_from(error: WorkflowUpdateFailedError) -> TrialRefused:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        kind = RefusalType(cause.type) if cause.type in set(RefusalType) else RefusalType.INVALID
        field = str(cause.details[0]) if cause.details else None
        return TrialRefused(kind, cause.message, field)
    return TrialRefused(RefusalType.INVALID, str(cause or error))


class TrialClient:
    def __init__(
        self,
        client: Client,
        pool: asyncpg.Pool,
        task_queue: str,
        *,
        history_event_limit: int = 10_000,
    ) -> None:
        self.client = client
        self.pool = pool
        self.task_queue = task_queue
        self.history_event_limit = history_event_limit

    async def check_proposal(self, actor: Actor, proposal: Proposal) -> str:
        """Check the proposal against the directory and policy; returns the organisation id."""
        person = await directory_queries.person(self.pool, actor.person_id)
        if person is None:
            raise TrialRefused(RefusalType.FORBIDDEN, "actor: unknown person", "actor")
        org = person.organisation_id
        if proposal.unit_id not in person.units and proposal.unit_id not in person.leads:
            raise TrialRefused(
                RefusalType.FORBIDDEN,
                f"proposal.unit_id: you can only propose for a unit you belong to"
                f" ({', '.join(sorted(set(person.units) | set(person.leads))) or 'none'})",
                "proposal.unit_id",
            )
        people = await directory_queries.contacts(self.pool, proposal.participants)
        for index, participant in enumerate(proposal.participants):
            found = people.get(participant)
            if found is None or found.organisation_id != org:
                raise TrialRefused(
                    RefusalType.INVALID,
                    f"proposal.participants[{index}]: {participant!r} is not a person in"
                    " your organisation",
                    f"proposal.participants[{index}]",
                )
        policy = await directory_queries.organisation_policy(self.pool, org)
        if policy is None:
            raise TrialRefused(RefusalType.NOT_FOUND, "organisation has no policy")
        try:
            check_proposal(proposal, policy, BusinessCalendar.for_policy(policy))
        except RuleViolation as error:
            raise TrialRefused(error.kind, str(error), error.field) from None
        return org

    async def propose(
        self, actor: Actor, proposal: Proposal, *, trial_id: uuid.UUID | None = None
    ) -> TrialView:
        """Start a trial; returns once its proposal is recorded in the read model."""
        org = await self.check_proposal(actor, proposal)
        trial_id = trial_id or uuid.uuid4()
        start = TrialStart(
            trial_id=trial_id,
            organisation_id=org,
            proposer_id=actor.on_behalf_of or actor.person_id,
            proposal=proposal,
            history_event_limit=self.history_event_limit,
        )
        try:
            handle = await self.client.start_workflow(
                TrialWorkflow.run,
                start,
                id=workflow_id_for(trial_id),
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=trial_search_attributes("proposed", org, proposal.unit_id, 0),
            )
        except WorkflowAlreadyStartedError:
            # the same trial id again (a retried request): answer with the trial already there
            handle = self.client.get_workflow_handle(workflow_id_for(trial_id))
        return await handle.execute_update(TrialWorkflow.ready)

    async def organisation_of(self, trial_id: uuid.UUID) -> str | None:
        return await self.pool.fetchval(
            "SELECT organisation_id FROM trials WHERE id = $1", trial_id
        )

    async def _ensure_visible(self, trial_id: uuid.UUID, organisation_id: str | None) -> None:
        if organisation_id is None:
            return
        if await self.organisation_of(trial_id) != organisation_id:
            raise TrialNotFound(str(trial_id))

    async def command(
        self,
        trial_id: uuid.UUID,
        name: str,
        command: BaseModel,
        *,
        organisation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> TrialView:
        """Send one command as an Update; a repeated idempotency key is answered once."""
        await self._ensure_visible(trial_id, organisation_id)
        handle = self.client.get_workflow_handle(workflow_id_for(trial_id))
        update_id = f"{name}:{idempotency_key}" if idempotency_key else None
        try:
            result: TrialView = await handle.execute_update(COMMANDS[name], command, id=update_id)
        except WorkflowUpdateFailedError as error:
            raise _refusal_from(error) from None
        except RPCError as error:
            if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                phase = await self.pool.fetchval("SELECT phase FROM trials WHERE id = $1", trial_id)
                if phase is None:
                    raise TrialNotFound(str(trial_id)) from None
                raise TrialRefused(
                    RefusalType.PHASE_CONFLICT,
                    f"phase: the trial is {phase} and has ended; it takes no more commands",
                    "phase",
                ) from None
            raise
        return result

    async def view(self, trial_id: uuid.UUID, *, organisation_id: str | None = None) -> TrialView:
        await self._ensure_visible(trial_id, organisation_id)
        handle = self.client.get_workflow_handle(workflow_id_for(trial_id))
        try:
            found: TrialView | None = await handle.query(TrialWorkflow.view)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise TrialNotFound(str(trial_id)) from None
            raise
        if found is None:
            raise TrialNotFound(str(trial_id))
        return found
