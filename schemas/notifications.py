"""Notification delivery: channels, delivery state as the API shows it, webhook bodies, digests.

Ids only: names and addresses are looked up in the directory when a message is sent, so nothing
here (nor in workflow history) holds personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.ids import OrganisationId, PersonId
from schemas.trial import NotificationKind


class Channel(StrEnum):
    EMAIL = "email"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class ExtraKind(StrEnum):
    """Messages that are not caused by one trial event (NotificationKind lives in schemas/trial)."""

    DIGEST = "digest"


# Every kind of message that has a template, in both languages.
MESSAGE_KINDS: tuple[str, ...] = (*(k.value for k in NotificationKind), ExtraKind.DIGEST.value)
LOCALES: tuple[str, ...] = ("da", "en")


class NotificationDelivery(BaseModel):
    """One delivery of a trial's notification on one channel, for GET /trials/{id}/notifications.

    `recipient_id` is a person for e-mail, `unit:<id>` or `organisation:<id>` for the Teams channel
    the card went to, and the subscription id for webhooks; `kind` is the notification kind, or the
    event kind for webhooks.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    channel: Channel
    kind: str
    recipient_id: str
    event_seq: int | None
    status: DeliveryStatus
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None


class WebhookBody(BaseModel):
    """The JSON POSTed to an organisation's webhook: one trial event, ids only, no names."""

    id: UUID = Field(description="The delivery id; the same on every retry of this delivery.")
    organisation_id: OrganisationId
    trial_id: UUID
    seq: int
    iteration: int
    kind: str
    phase: str
    occurred_at: datetime
    actor_id: PersonId | None = None
    on_behalf_of: PersonId | None = None
    data: dict[str, Any] = Field(default_factory=dict)


WEEK_PATTERN = r"^\d{4}-W\d{2}$"


class DigestRun(BaseModel):
    """Input of DigestWorkflow; the schedule passes none of it (this week, every organisation)."""

    week: str | None = Field(default=None, pattern=WEEK_PATTERN)
    organisations: list[OrganisationId] | None = None


class DigestRequest(BaseModel):
    """Input of the weekly digest activity: the ISO week (e.g. "2026-W03") and the day it runs."""

    week: str = Field(pattern=WEEK_PATTERN)
    on: date
    organisations: list[OrganisationId] | None = None


class DigestApproval(BaseModel):
    trial_id: UUID
    due_at: datetime | None = None


class DigestEscalation(BaseModel):
    trial_id: UUID
    step: str
    level: int


class DigestStalled(BaseModel):
    trial_id: UUID
    unit_id: str
    since: datetime | None = None


class LeaderDigest(BaseModel):
    """What waits on one leader this week; stored as the digest row's payload."""

    organisation_id: OrganisationId
    person_id: PersonId
    week: str
    approvals: list[DigestApproval] = Field(default_factory=list)
    escalations: list[DigestEscalation] = Field(default_factory=list)
    stalled: list[DigestStalled] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.approvals or self.escalations or self.stalled)


class DigestResult(BaseModel):
    week: str
    leaders_considered: int
    digests_enqueued: int
    already_enqueued: int
