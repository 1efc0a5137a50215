"""What the proposer submits: one Plan-Do-Study-Act cycle."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.duration import Duration
from schemas.ids import PersonId, UnitId


class Measure(BaseModel):
    """A named series of values, e.g. "minutes waiting per patient", and which way is better."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=40)
    better: Literal["higher", "lower"]


class Proposal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Fælles morgenhuddle på 10 minutter",
                    "problem": "Vagtskiftet tager lang tid, og opgaver falder mellem to stole.",
                    "change": "Vi holder en stående huddle kl. 7.45 med fast dagsorden.",
                    "question": "Bliver overleveringen kortere uden at vi mister information?",
                    "prediction": "Overleveringen falder fra 25 til 15 minutter.",
                    "success_criteria": "Under 15 minutter i 4 ud af 5 dage, ingen glemte opgaver.",
                    "measures": [{"name": "overlevering", "unit": "minutter", "better": "lower"}],
                    "participants": ["bo", "dina"],
                    "unit_id": "aarhus-sundhed-hjemmepleje-nord",
                    "planned_start": "2027-01-04",
                    "planned_duration": "6 weeks",
                }
            ]
        },
    )

    title: str = Field(min_length=3, max_length=200)
    problem: str = Field(min_length=1, max_length=4000)
    change: str = Field(min_length=1, max_length=4000, description="The proposed change.")
    question: str = Field(min_length=1, max_length=2000, description="The question it answers.")
    prediction: str = Field(min_length=1, max_length=2000)
    success_criteria: str = Field(min_length=1, max_length=2000)
    measures: list[Measure] = Field(default_factory=list, max_length=20)
    participants: list[PersonId] = Field(default_factory=list, max_length=200)
    unit_id: UnitId
    planned_start: date
    planned_duration: Duration

    @field_validator("measures")
    @classmethod
    def _unique_measures(cls, value: list[Measure]) -> list[Measure]:
        names = [m.name for m in value]
        if len(names) != len(set(names)):
            raise ValueError("measure names must be unique")
        return value

    @field_validator("participants")
    @classmethod
    def _unique_participants(cls, value: list[PersonId]) -> list[PersonId]:
        if len(value) != len(set(value)):
            raise ValueError("participants must not repeat")
        return value

    @field_validator("planned_duration")
    @classmethod
    def _positive(cls, value: Duration) -> Duration:
        if value.amount < 1:
            raise ValueError("planned duration must be longer than zero")
        return value
