"""Request and response bodies of the HTTP API.

Request bodies are the commands of schemas/commands.py without `actor`: the API fills in who acts
(from the verified token) and on whose behalf (from the directory), never the client. Each body
checks itself against its command's own rules, so the rules live in one place and a body the
workflow would refuse as malformed is a 422 with field errors before anything is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.commands import (
    Abort,
    Actor,
    ApprovalChoice,
    ApprovalDecision,
    CheckIn,
    Evaluation,
    Extend,
    FollowUpAnswer,
    OutcomeChoice,
    OutcomeDecision,
    Pause,
    Resume,
    Revision,
    Verdict,
    Withdraw,
)
from schemas.duration import Duration
from schemas.ids import OrganisationId, PersonId, UnitId
from schemas.notifications import NotificationDelivery
from schemas.proposal import Proposal
from schemas.trial import EventKind, Phase

_PROBE = Actor(person_id="probe")  # stands in for the caller while a body checks its rules

_PROPOSAL_EXAMPLE: dict[str, Any] = Proposal.model_json_schema()["examples"][0]


def _message(error: Any) -> str:
    text = str(error.get("msg", "invalid"))
    return text.removeprefix("Value error, ")


class CommandBody(BaseModel):
    """A command's body; `to_command` adds the actor the API determined."""

    model_config = ConfigDict(extra="forbid")

    command_type: ClassVar[type[BaseModel]]

    def to_command(self, actor: Actor) -> BaseModel:
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return self.command_type.model_validate({**fields, "actor": actor})

    @model_validator(mode="after")
    def _rules_of_the_command(self) -> Self:
        try:
            self.to_command(_PROBE)
        except ValidationError as error:
            raise ValueError("; ".join(_message(e) for e in error.errors())) from None
        return self


class ApprovalRequest(CommandBody):
    """Approve, reject or request changes; a comment is required unless approving."""

    command_type = ApprovalDecision
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"decision": "approve", "comment": "God idé, prøv det."},
                {"decision": "request_changes", "comment": "Tilføj en måling af fejl."},
            ]
        }
    )

    decision: ApprovalChoice
    comment: str | None = Field(default=None, max_length=4000)


class RevisionRequest(CommandBody):
    """The proposer's revised proposal after a change request."""

    command_type = Revision
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "proposal": {**_PROPOSAL_EXAMPLE, "title": "Morgenhuddle med fejlregistrering"},
                    "comment": "Måling af glemte opgaver er tilføjet.",
                }
            ]
        }
    )

    proposal: Proposal
    comment: str | None = Field(default=None, max_length=4000)


class CheckInRequest(CommandBody):
    """A short progress note, optionally with values of the trial's measures."""

    command_type = CheckIn
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"note": "Første uge gik godt.", "measures": {"overlevering": 17}}]
        }
    )

    note: str = Field(min_length=1, max_length=4000)
    measures: dict[str, float] = Field(default_factory=dict)


class PauseRequest(CommandBody):
    command_type = Pause
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Sygdom i teamet i to uger."}]}
    )

    reason: str | None = Field(default=None, max_length=4000)


class ResumeRequest(CommandBody):
    command_type = Resume
    model_config = ConfigDict(json_schema_extra={"examples": [{}]})


class ExtendRequest(CommandBody):
    """Move the end date later, within the organisation's maximum trial length."""

    command_type = Extend
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"by": "2 weeks", "reason": "Vi mangler data fra nattevagterne."}]
        }
    )

    by: Duration
    reason: str | None = Field(default=None, max_length=4000)


class AbortRequest(CommandBody):
    """End the trial early; it still goes on to evaluation."""

    command_type = Abort
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Huddlen tog tid fra beboerne."}]}
    )

    reason: str = Field(min_length=1, max_length=4000)


class WithdrawRequest(CommandBody):
    command_type = Withdraw
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "Nyt vagtskema."}]})

    reason: str | None = Field(default=None, max_length=4000)


class EvaluationRequest(CommandBody):
    """The Study step: did it work, what effect, effort and value, did the prediction hold."""

    command_type = Evaluation
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "worked": "yes",
                    "effect": "Overleveringen tog 14 minutter i snit.",
                    "effort": 2,
                    "value": 4,
                    "prediction_held": "partly",
                    "comment": "Fredage var sværere.",
                }
            ]
        }
    )

    worked: Verdict
    effect: str = Field(min_length=1, max_length=4000)
    effort: int = Field(ge=1, le=5, description="1 = very little effort, 5 = a great deal")
    value: int = Field(ge=1, le=5, description="1 = no value, 5 = great value")
    prediction_held: Verdict
    comment: str | None = Field(default=None, max_length=4000)


class OutcomeRequest(CommandBody):
    """Adopt, adapt (with the next iteration's plan) or abandon."""

    command_type = OutcomeDecision
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"decision": "adopt", "comment": "Vi fortsætter med huddlen."},
                {
                    "decision": "adapt",
                    "comment": "Vi prøver igen med kortere dagsorden.",
                    "revised_proposal": {**_PROPOSAL_EXAMPLE, "title": "Huddle på 5 minutter"},
                },
            ]
        }
    )

    decision: OutcomeChoice
    comment: str | None = Field(default=None, max_length=4000)
    revised_proposal: Proposal | None = Field(
        default=None, description="Required for adapt: the plan of the next iteration."
    )


class FollowUpRequest(CommandBody):
    """The answer to the sustainment follow-up after adoption."""

    command_type = FollowUpAnswer
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"still_in_use": True, "comment": "Fast del af dagen."}]}
    )

    still_in_use: bool
    comment: str | None = Field(default=None, max_length=4000)


# ---------------------------------------------------------------------------------- responses


class TrialSummary(BaseModel):
    """One trial in a list: enough to show and sort it, read from the read model."""

    trial_id: UUID
    title: str
    phase: Phase
    organisation_id: OrganisationId
    unit_id: UnitId
    proposer_id: PersonId
    iteration: int
    stalled: bool
    escalation_level: int
    created_at: datetime
    last_activity_at: datetime
    due_at: datetime | None = Field(
        default=None, description="Deadline of what the trial waits on now, if anything."
    )


class TrialPage(BaseModel):
    items: list[TrialSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last page."
    )


class AuditEvent(BaseModel):
    """One entry of the audit trail: what happened, who did it and on whose behalf."""

    seq: int
    iteration: int
    kind: EventKind
    phase: Phase
    occurred_at: datetime
    actor_id: PersonId | None = None
    on_behalf_of: PersonId | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    trial_id: UUID
    items: list[AuditEvent]


class InboxItem(BaseModel):
    trial_id: UUID
    title: str
    phase: Phase
    unit_id: UnitId
    due_at: datetime | None = None
    why: str = Field(description="Why this waits on the caller, in a sentence.")


class Inbox(BaseModel):
    """What waits on the caller; each section lists at most 100 trials, soonest due first."""

    person_id: PersonId
    approvals: list[InboxItem] = Field(default_factory=list)
    decisions: list[InboxItem] = Field(default_factory=list)
    check_ins: list[InboxItem] = Field(default_factory=list)
    evaluations: list[InboxItem] = Field(default_factory=list)
    attention: list[InboxItem] = Field(default_factory=list)


class FieldError(BaseModel):
    """One field error of an invalid request, as pydantic reports it."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error: `detail` says what is wrong; refusals also name their kind and field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "actor: no self-approval: the proposer cannot approve their own"
                    " trial, nor can anyone acting on the proposer's behalf",
                    "kind": "Forbidden",
                    "field": "actor",
                }
            ]
        }
    )

    detail: str | list[FieldError]
    kind: str | None = Field(
        default=None,
        description="Forbidden, PhaseConflict, InvalidCommand, NotFound or NotReady.",
    )
    field: str | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description="Each dependency (temporal, postgres) and 'ok' or what went wrong."
    )


class NotificationList(BaseModel):
    """The deliveries of one trial's notifications, oldest event first."""

    trial_id: UUID
    items: list[NotificationDelivery]
