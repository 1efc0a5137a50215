"""The directory: organisations (tenants), their unit tree, people, leaders and substitutes.

This is the only place that holds names and e-mail addresses; workflows refer to people by id.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from schemas.ids import OrganisationId, PersonId, Slug, UnitId
from schemas.policy import Policy

# An http(s) URL without spaces; Teams (Power Automate) and integration endpoints.
HTTP_URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
HttpUrlText = Annotated[str, StringConstraints(pattern=HTTP_URL_PATTERN, max_length=2000)]


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UnitId
    name: str = Field(min_length=1, max_length=200)
    parent: UnitId | None = None
    leaders: list[PersonId] = Field(default_factory=list)
    teams_webhook_url: HttpUrlText | None = Field(
        default=None,
        description="Power Automate 'When a Teams webhook request is received' URL for the"
        " unit's channel; units without one use the nearest one up the tree.",
    )


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: PersonId
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    locale: Literal["da", "en"] = "da"
    units: list[UnitId] = Field(default_factory=list)
    admin: bool = False


class Substitute(BaseModel):
    """`substitute` acts for `leader` from `from_date` to `to_date`, both days included."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    leader: PersonId
    substitute: PersonId
    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")

    @model_validator(mode="after")
    def _period(self) -> Substitute:
        if self.to_date < self.from_date:
            raise ValueError("'to' must be on or after 'from'")
        if self.leader == self.substitute:
            raise ValueError("a leader cannot be their own substitute")
        return self


class WebhookSubscription(BaseModel):
    """An integration that receives the organisation's trial events, signed with `secret`."""

    model_config = ConfigDict(extra="forbid")

    id: Slug
    url: HttpUrlText
    secret: str = Field(min_length=16, max_length=500, repr=False)
    events: list[str] = Field(
        default_factory=list, description="Event kinds to send; empty means every kind."
    )
    active: bool = True


class Organisation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: OrganisationId
    name: str = Field(min_length=1, max_length=200)
    policy: Policy = Field(default_factory=Policy)
    units: list[Unit] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    substitutes: list[Substitute] = Field(default_factory=list)
    teams_webhook_url: HttpUrlText | None = Field(
        default=None, description="The Teams channel of units that have none of their own."
    )
    webhooks: list[WebhookSubscription] = Field(default_factory=list)


class DirectoryFile(BaseModel):
    """The YAML file read by `provehandling directory load`."""

    model_config = ConfigDict(extra="forbid")

    organisations: list[Organisation] = Field(min_length=1)


class EligibleApprover(BaseModel):
    """Someone who may act as a leader on a trial, possibly only within a period."""

    model_config = ConfigDict(frozen=True)

    person_id: PersonId
    via: Literal["leader", "substitute", "escalation"]
    on_behalf_of: PersonId | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    def valid_on(self, day: date) -> bool:
        if self.valid_from is not None and day < self.valid_from:
            return False
        return not (self.valid_to is not None and day > self.valid_to)


class EscalationTarget(BaseModel):
    """Who a stalled step goes to at one rung of the ladder."""

    unit_id: UnitId
    level: int
    recipients: list[EligibleApprover]
