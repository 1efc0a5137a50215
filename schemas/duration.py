"""Durations written with their unit ("5 working days", "3 days", "30 seconds").

Working days follow the business calendar (see workflows/calendar.py); the other units are exact.
Seconds exist so demos and tests can run a whole lifecycle quickly.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class DurationUnit(StrEnum):
    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    WORKING_DAYS = "working days"


_UNIT_WORDS: dict[str, DurationUnit] = {
    "second": DurationUnit.SECONDS,
    "seconds": DurationUnit.SECONDS,
    "sekund": DurationUnit.SECONDS,
    "sekunder": DurationUnit.SECONDS,
    "minute": DurationUnit.MINUTES,
    "minutes": DurationUnit.MINUTES,
    "minut": DurationUnit.MINUTES,
    "minutter": DurationUnit.MINUTES,
    "hour": DurationUnit.HOURS,
    "hours": DurationUnit.HOURS,
    "time": DurationUnit.HOURS,
    "timer": DurationUnit.HOURS,
    "day": DurationUnit.DAYS,
    "days": DurationUnit.DAYS,
    "dag": DurationUnit.DAYS,
    "dage": DurationUnit.DAYS,
    "week": DurationUnit.WEEKS,
    "weeks": DurationUnit.WEEKS,
    "uge": DurationUnit.WEEKS,
    "uger": DurationUnit.WEEKS,
    "working day": DurationUnit.WORKING_DAYS,
    "working days": DurationUnit.WORKING_DAYS,
    "arbejdsdag": DurationUnit.WORKING_DAYS,
    "arbejdsdage": DurationUnit.WORKING_DAYS,
}

_PATTERN = re.compile(r"^\s*(\d{1,6})\s+([a-zæøå ]+?)\s*$", re.IGNORECASE)

_EXACT = {
    DurationUnit.SECONDS: timedelta(seconds=1),
    DurationUnit.MINUTES: timedelta(minutes=1),
    DurationUnit.HOURS: timedelta(hours=1),
    DurationUnit.DAYS: timedelta(days=1),
    DurationUnit.WEEKS: timedelta(weeks=1),
}


class Duration(BaseModel):
    """A length of time with its unit; written and read as text such as "5 working days"."""

    model_config = ConfigDict(frozen=True)

    amount: int = Field(ge=0, le=1_000_000)
    unit: DurationUnit

    @model_validator(mode="before")
    @classmethod
    def _parse_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _PATTERN.match(value)
            unit = _UNIT_WORDS.get(" ".join(match.group(2).lower().split())) if match else None
            if match is None or unit is None:
                raise ValueError(
                    f"duration {value!r} must be a whole number and a unit, e.g. '5 working days',"
                    " '3 days', '2 weeks' or '30 seconds'"
                )
            return {"amount": int(match.group(1)), "unit": unit}
        return value

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        unit = self.unit.value
        if self.amount == 1:
            unit = unit.removesuffix("s")
        return f"{self.amount} {unit}"

    @property
    def is_working_days(self) -> bool:
        return self.unit is DurationUnit.WORKING_DAYS

    def exact(self) -> timedelta:
        """The exact length of a duration not counted in working days."""
        if self.is_working_days:
            raise ValueError("working days have no fixed length; use the business calendar")
        return self.amount * _EXACT[self.unit]
