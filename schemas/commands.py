"""Commands sent to a trial as Temporal Updates; each names who acts and on whose behalf."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.duration import Duration
from schemas.ids import PersonId
from schemas.proposal import Proposal


class Actor(BaseModel):
    """The person who acts, and the person they act for (a substitute for a leader, say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person_id: PersonId
    on_behalf_of: PersonId | None = None

    def involves(self, person_id: str) -> bool:
        return person_id in (self.person_id, self.on_behalf_of)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Actor


class ApprovalChoice(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class ApprovalDecision(_Command):
    decision: ApprovalChoice
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _comment_needed(self) -> ApprovalDecision:
        if self.decision is not ApprovalChoice.APPROVE and not (self.comment or "").strip():
            raise ValueError(f"a comment is required to {self.decision.value.replace('_', ' ')}")
        return self


class Revision(_Command):
    proposal: Proposal
    comment: str | None = Field(default=None, max_length=4000)


class CheckIn(_Command):
    note: str = Field(min_length=1, max_length=4000)
    measures: dict[str, float] = Field(default_factory=dict)


class Pause(_Command):
    reason: str | None = Field(default=None, max_length=4000)


class Resume(_Command):
    pass


class Extend(_Command):
    by: Duration
    reason: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _positive(self) -> Extend:
        if self.by.amount < 1:
            raise ValueError("by: an extension must be longer than zero")
        return self


class Abort(_Command):
    reason: str = Field(min_length=1, max_length=4000)


class Withdraw(_Command):
    reason: str | None = Field(default=None, max_length=4000)


Verdict = Literal["yes", "partly", "no"]


class Evaluation(_Command):
    """The Study step: did it work, what effect, what effort and value, did the prediction hold."""

    worked: Verdict
    effect: str = Field(min_length=1, max_length=4000)
    effort: int = Field(ge=1, le=5, description="1 = very little effort, 5 = a great deal")
    value: int = Field(ge=1, le=5, description="1 = no value, 5 = great value")
    prediction_held: Verdict
    comment: str | None = Field(default=None, max_length=4000)


class OutcomeChoice(StrEnum):
    ADOPT = "adopt"
    ADAPT = "adapt"
    ABANDON = "abandon"


class OutcomeDecision(_Command):
    decision: OutcomeChoice
    comment: str | None = Field(default=None, max_length=4000)
    revised_proposal: Proposal | None = Field(
        default=None, description="Required for adapt: the plan of the next iteration."
    )

    @model_validator(mode="after")
    def _revised_plan(self) -> OutcomeDecision:
        if self.decision is OutcomeChoice.ADAPT and self.revised_proposal is None:
            raise ValueError("revised_proposal is required to adapt")
        if self.decision is not OutcomeChoice.ADAPT and self.revised_proposal is not None:
            raise ValueError("revised_proposal is only allowed with adapt")
        return self


class FollowUpAnswer(_Command):
    still_in_use: bool
    comment: str | None = Field(default=None, max_length=4000)
