"""An organisation's policy: the deadlines, quorum and limits its trials run under."""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.duration import Duration

_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def parse_extra_holiday(text: str) -> tuple[int | None, int, int]:
    """Parse "MM-DD" (every year) or "YYYY-MM-DD" (once) into (year or None, month, day)."""
    match = _MONTH_DAY.match(text)
    if match:
        month, day = int(match.group(1)), int(match.group(2))
        date(2024, month, day)  # 2024 is a leap year, so 02-29 is accepted
        return None, month, day
    parsed = date.fromisoformat(text)
    return parsed.year, parsed.month, parsed.day


class Policy(BaseModel):
    """Deadlines and limits; each duration is text with its unit, e.g. "5 working days"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_sla: Duration = Duration.model_validate("5 working days")
    reminder_after: Duration = Duration.model_validate("3 working days")
    escalation_interval: Duration = Duration.model_validate("2 working days")
    max_escalation_levels: int = Field(default=2, ge=0, le=10)
    required_approvals: int = Field(default=1, ge=1, le=10)
    stall_after: Duration = Duration.model_validate("10 working days")
    evaluation_sla: Duration = Duration.model_validate("10 working days")
    decision_sla: Duration = Duration.model_validate("5 working days")
    max_trial_length: Duration = Duration.model_validate("12 weeks")
    follow_up_after: Duration = Duration.model_validate("90 days")
    extra_holidays: tuple[str, ...] = Field(
        default=(),
        description='Local days off: "MM-DD" every year (e.g. "12-24") or "YYYY-MM-DD" once.',
    )

    @field_validator("extra_holidays")
    @classmethod
    def _check_holidays(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                parse_extra_holiday(item)
            except ValueError:
                raise ValueError(
                    f"extra holiday {item!r} must be 'MM-DD' (every year) or 'YYYY-MM-DD' (once)"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_positive(self) -> Policy:
        for name in (
            "approval_sla",
            "escalation_interval",
            "stall_after",
            "evaluation_sla",
            "decision_sla",
            "max_trial_length",
            "follow_up_after",
        ):
            if getattr(self, name).amount < 1:
                raise ValueError(f"{name} must be longer than zero")
        return self
