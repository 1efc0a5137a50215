"""The trial's state as the workflow holds it and as queries, the read model and the API show it.

One model serves as workflow state, continue-as-new input and view, so nothing is lost between
runs and the read model stores exactly what the Temporal query returns.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from schemas.commands import OutcomeChoice, Verdict
from schemas.directory import EligibleApprover
from schemas.ids import OrganisationId, PersonId, UnitId
from schemas.policy import Policy
from schemas.proposal import Proposal


class Phase(StrEnum):
    PROPOSED = "proposed"
    CHANGES_REQUESTED = "changes_requested"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    EVALUATING = "evaluating"
    DECIDING = "deciding"
    ADOPTED = "adopted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    ABANDONED = "abandoned"


ENDED_PHASES = frozenset({Phase.ADOPTED, Phase.REJECTED, Phase.WITHDRAWN, Phase.ABANDONED})


class Step(StrEnum):
    """A waiting step that has an escalation ladder."""

    APPROVAL = "approval"
    CHECK_IN = "check_in"
    EVALUATION = "evaluation"
    DECISION = "decision"


class StepClock(BaseModel):
    """Where a waiting step stands on its ladder: reminded, then escalated level by level."""

    step: Step
    started_at: datetime
    reminded_at: datetime | None = None
    level: int = 0
    last_rung_at: datetime | None = None
    escalated_to_units: list[UnitId] = Field(default_factory=list)
    exhausted: bool = False


class ApprovalRecord(BaseModel):
    person_id: PersonId
    on_behalf_of: PersonId | None = None
    at: datetime
    comment: str | None = None


class CheckInRecord(BaseModel):
    person_id: PersonId
    at: datetime
    note: str
    measures: dict[str, float] = Field(default_factory=dict)


class EvaluationRecord(BaseModel):
    person_id: PersonId
    at: datetime
    worked: Verdict
    effect: str
    effort: int
    value: int
    prediction_held: Verdict
    comment: str | None = None


class OutcomeRecord(BaseModel):
    decision: OutcomeChoice
    person_id: PersonId
    on_behalf_of: PersonId | None = None
    at: datetime
    comment: str | None = None


class FollowUpRecord(BaseModel):
    due_at: datetime
    requested_at: datetime | None = None
    answered_at: datetime | None = None
    still_in_use: bool | None = None
    comment: str | None = None
    closed_unanswered: bool = False


class IterationSummary(BaseModel):
    """A finished PDSA iteration, kept when the trial is adapted into the next one."""

    iteration: int
    title: str
    started_at: datetime | None
    ended_at: datetime | None
    outcome: OutcomeRecord | None
    evaluations: int


class Deadlines(BaseModel):
    approval_due: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    check_in_due: datetime | None = None
    evaluation_due: datetime | None = None
    decision_due: datetime | None = None
    follow_up_at: datetime | None = None


class TrialView(BaseModel):
    """Everything the workflow knows about a trial; returned by the `view` query."""

    trial_id: UUID
    workflow_id: str
    organisation_id: OrganisationId
    unit_id: UnitId
    proposer_id: PersonId
    iteration: int = 1
    phase: Phase = Phase.PROPOSED
    proposal: Proposal
    policy: Policy
    created_at: datetime
    updated_at: datetime
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    required_approvals: int = 1
    eligible_approvers: list[EligibleApprover] = Field(default_factory=list)
    change_request: ApprovalRecord | None = None
    deadlines: Deadlines = Field(default_factory=Deadlines)
    clocks: dict[Step, StepClock] = Field(default_factory=dict)
    stalled: bool = False
    last_check_in: CheckInRecord | None = None
    check_ins: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    paused_seconds: float = 0.0
    extended_by: list[str] = Field(default_factory=list)
    abort_reason: str | None = None
    evaluations: list[EvaluationRecord] = Field(default_factory=list)
    outcome: OutcomeRecord | None = None
    follow_up: FollowUpRecord | None = None
    previous_iterations: list[IterationSummary] = Field(default_factory=list)
    last_seq: int = 0
    closed: bool = False
    handled_updates: list[str] = Field(
        default_factory=list,
        description="Ids of the latest commands applied; a retry of one is answered, not redone.",
    )

    @property
    def participants(self) -> list[PersonId]:
        return list(self.proposal.participants)

    @property
    def escalation_level(self) -> int:
        """The highest rung any open step has reached (0 when nothing is escalated)."""
        return max((clock.level for clock in self.clocks.values()), default=0)


class NotificationKind(StrEnum):
    APPROVAL_REQUESTED = "approval_requested"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    TRIAL_STARTS = "trial_starts"
    CHECK_IN_REMINDER = "check_in_reminder"
    STALLED = "stalled"
    EVALUATION_REQUESTED = "evaluation_requested"
    DECISION_REQUESTED = "decision_requested"
    OUTCOME = "outcome"
    FOLLOW_UP = "follow_up"
    WITHDRAWN = "withdrawn"
    PAUSED = "paused"
    RESUMED = "resumed"
    EXTENDED = "extended"
    ABORTED = "aborted"


class NotificationIntent(BaseModel):
    """One notification the event causes; written to the outbox with the event."""

    recipient_id: PersonId
    kind: NotificationKind


class EventKind(StrEnum):
    PROPOSED = "proposed"
    APPROVAL_GIVEN = "approval_given"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REVISED = "revised"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    STARTED = "started"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    ESCALATION_EXHAUSTED = "escalation_exhausted"
    CHECKED_IN = "checked_in"
    STALLED = "stalled"
    PAUSED = "paused"
    RESUMED = "resumed"
    EXTENDED = "extended"
    ABORTED = "aborted"
    ENDED = "ended"
    EVALUATED = "evaluated"
    EVALUATION_CLOSED = "evaluation_closed"
    ADOPTED = "adopted"
    ADAPTED = "adapted"
    ABANDONED = "abandoned"
    FOLLOW_UP_REQUESTED = "follow_up_requested"
    FOLLOW_UP_ANSWERED = "follow_up_answered"
    FOLLOW_UP_CLOSED = "follow_up_closed"


class TrialEvent(BaseModel):
    """One entry in the audit trail; `seq` is contiguous per trial across iterations."""

    trial_id: UUID
    seq: int = Field(ge=1)
    iteration: int
    kind: EventKind
    occurred_at: datetime
    phase: Phase
    actor_id: PersonId | None = None
    on_behalf_of: PersonId | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    notifications: list[NotificationIntent] = Field(default_factory=list)


class RecordEventInput(BaseModel):
    """What the recording activity writes in one transaction: the event and the view after it."""

    event: TrialEvent
    view: TrialView


class RecordEventsInput(BaseModel):
    """Events one command or timer caused, in seq order, and the view after the last of them."""

    events: list[TrialEvent] = Field(min_length=1)
    view: TrialView


class TrialStart(BaseModel):
    """Workflow input: a new proposal, or the carried state when continuing as new."""

    trial_id: UUID
    organisation_id: OrganisationId
    proposer_id: PersonId
    proposal: Proposal
    submitted_at: datetime | None = None
    carried: TrialView | None = Field(
        default=None, description="State carried over by continue-as-new."
    )
    history_event_limit: int = Field(
        default=10_000,
        ge=20,
        description="Continue as new once history grows past this (or when Temporal suggests).",
    )


class ApproverQuery(BaseModel):
    """Input of the activity that resolves who may approve a unit's trials on a given day."""

    organisation_id: OrganisationId
    unit_id: UnitId
    on: date


class EscalationQuery(BaseModel):
    """Input of the activity that resolves the next rung of an escalation ladder."""

    organisation_id: OrganisationId
    unit_id: UnitId
    step: Step
    level: int = Field(ge=1)
    already_visited: list[UnitId] = Field(default_factory=list)
    on: date
