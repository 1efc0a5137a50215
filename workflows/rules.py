"""Pure rule checks shared by the workflow's validators and the client that starts trials."""

from __future__ import annotations

from datetime import datetime

from schemas.directory import EligibleApprover
from schemas.errors import RuleViolation
from schemas.policy import Policy
from schemas.proposal import Proposal
from workflows.calendar import BusinessCalendar


def check_proposal(proposal: Proposal, policy: Policy, calendar: BusinessCalendar) -> None:
    """A proposal's planned length must fit the organisation's maximum trial length."""
    start = calendar.local_midnight(proposal.planned_start)
    planned_end = calendar.add(start, proposal.planned_duration)
    allowed_end = calendar.add(start, policy.max_trial_length)
    if planned_end <= start:
        raise RuleViolation(
            "proposal.planned_duration", "the end date must be after the start date"
        )
    if planned_end > allowed_end:
        raise RuleViolation(
            "proposal.planned_duration",
            f"{proposal.planned_duration} is longer than the organisation's maximum trial length"
            f" of {policy.max_trial_length}",
        )


def eligible_on(
    approvers: list[EligibleApprover], person_id: str, now: datetime, calendar: BusinessCalendar
) -> EligibleApprover | None:
    """The entry that lets person_id act as a leader today, if any."""
    today = calendar.today(now)
    for entry in approvers:
        if entry.person_id == person_id and entry.valid_on(today):
            return entry
    return None
