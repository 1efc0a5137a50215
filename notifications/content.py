"""What a message says, built when it is sent: from the outbox row, the event, the trial's current
row and the directory (names, addresses, locales, unit names), never from workflow history.

Every template gets the same keys (recipient, recipient_role, trial, event, step, escalation,
people, link, digest), None where a kind has nothing to say, so templates run under StrictUndefined
and a misspelt key fails in the tests instead of printing nothing in a real mail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from uuid import UUID

import asyncpg

from schemas.notifications import LeaderDigest, WebhookBody
from schemas.trial import NotificationKind, TrialView
from store import directory_queries
from store.directory_queries import Contact
from store.outbox import ClaimedWebhook

STEP_LABELS: dict[str, dict[str, str]] = {
    "da": {
        "approval": "godkendelse",
        "check_in": "en statusmelding",
        "evaluation": "evaluering",
        "decision": "en beslutning",
    },
    "en": {
        "approval": "approval",
        "check_in": "a check-in",
        "evaluation": "evaluation",
        "decision": "a decision",
    },
}
WORDS: dict[str, dict[str, str]] = {
    "da": {
        "on_behalf": "for",
        "someone": "En kollega",
        "trial": "Prøvehandling",
        "unit": "Enhed",
        "people": "Berørte",
        "deadline": "Frist",
        "open": "Åbn",
        "level": "Trin",
    },
    "en": {
        "on_behalf": "on behalf of",
        "someone": "A colleague",
        "trial": "Trial",
        "unit": "Unit",
        "people": "People concerned",
        "deadline": "Deadline",
        "open": "Open",
        "level": "Level",
    },
}
_STEP_DUE = {
    "approval": "approval_due",
    "check_in": "check_in_due",
    "evaluation": "evaluation_due",
    "decision": "decision_due",
}


class MissingData(LookupError):
    """The event or trial a row refers to is not in the read model; retrying will not help."""


@dataclass(frozen=True)
class EventFacts:
    """The event and its trial's current row, loaded once per delivery."""

    trial_id: UUID
    seq: int
    organisation_id: str
    unit_id: str
    kind: str
    iteration: int
    phase: str
    actor_id: str | None
    on_behalf_of: str | None
    occurred_at: datetime
    data: dict[str, Any]
    view: TrialView


async def load_event(pool: asyncpg.Pool, trial_id: UUID, seq: int) -> EventFacts:
    row = await pool.fetchrow(
        """
        SELECT e.trial_id, e.seq, e.kind, e.iteration, e.phase, e.actor_id, e.on_behalf_of,
               e.occurred_at, e.data, t.organisation_id, t.unit_id, t.view
        FROM trial_events e JOIN trials t ON t.id = e.trial_id
        WHERE e.trial_id = $1 AND e.seq = $2
        """,
        trial_id,
        seq,
    )
    if row is None:
        raise MissingData(f"event {seq} of trial {trial_id} is not in the read model")
    return EventFacts(
        trial_id=row["trial_id"],
        seq=row["seq"],
        organisation_id=row["organisation_id"],
        unit_id=row["unit_id"],
        kind=row["kind"],
        iteration=row["iteration"],
        phase=row["phase"],
        actor_id=row["actor_id"],
        on_behalf_of=row["on_behalf_of"],
        occurred_at=row["occurred_at"],
        data=dict(row["data"] or {}),
        view=TrialView.model_validate(row["view"]),
    )


def trial_link(base_url: str, trial_id: UUID | str) -> str:
    return f"{base_url.rstrip('/')}/trials/{trial_id}"


def _name(contacts: dict[str, Contact], person_id: str | None) -> str | None:
    if person_id is None:
        return None
    found = contacts.get(person_id)
    return found.name if found else None


def _names(contacts: dict[str, Contact], ids: Iterable[str | None]) -> list[str]:
    """Names in the given order; people no longer in the directory are left out."""
    names = (_name(contacts, i) for i in dict.fromkeys(i for i in ids if i))
    return [n for n in names if n]


async def concerned_people(pool: asyncpg.Pool, trial_id: UUID, seq: int, kind: str) -> list[str]:
    """Who an event's notification of one kind is for: the e-mail rows of (trial, seq, kind)."""
    rows = await pool.fetch(
        """
        SELECT recipient_id FROM notifications
        WHERE trial_id = $1 AND event_seq = $2 AND kind = $3 AND channel = 'email'
        ORDER BY id
        """,
        trial_id,
        seq,
        kind,
    )
    return [r["recipient_id"] for r in rows]


async def _escalation_facts(
    pool: asyncpg.Pool, facts: EventFacts
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(escalation facts, units to name, people to name) for an `escalated` event.

    Whom it came from is the rung below: the previous escalation of the same step, or for the
    first rung the trial's own unit (its leaders for approval and decision; the proposer and
    participants for check-ins and evaluations, since they are the ones who are late).
    """
    data = facts.data
    step = str(data.get("step", ""))
    level = int(data.get("level", 1))
    previous = None
    if level > 1:
        previous = await pool.fetchrow(
            """
            SELECT data FROM trial_events
            WHERE trial_id = $1 AND seq < $2 AND kind = 'escalated'
              AND data->>'step' = $3 AND (data->>'level')::int = $4
            ORDER BY seq DESC LIMIT 1
            """,
            facts.trial_id,
            facts.seq,
            step,
            level - 1,
        )
    if previous is not None:
        before = dict(previous["data"] or {})
        from_unit = str(before.get("unit_id") or facts.unit_id)
        from_ids = [str(p) for p in before.get("to") or []]
    else:
        from_unit = facts.unit_id
        view = facts.view
        if step in ("approval", "decision"):
            from_ids = await directory_queries.unit_leader_ids(pool, facts.unit_id)
        elif step == "evaluation":
            done = {e.person_id for e in view.evaluations}
            from_ids = [p for p in [view.proposer_id, *view.participants] if p not in done]
        else:
            from_ids = [view.proposer_id, *view.participants]
    first = await pool.fetchval(
        """
        SELECT occurred_at FROM trial_events
        WHERE trial_id = $1 AND seq <= $2 AND kind = 'escalated'
          AND data->>'step' = $3 AND (data->>'level')::int = 1
        ORDER BY seq DESC LIMIT 1
        """,
        facts.trial_id,
        facts.seq,
        step,
    )
    to_unit = str(data.get("unit_id") or facts.unit_id)
    to_ids = [str(p) for p in data.get("to") or []]
    return (
        {
            "level": level,
            "unit_id": to_unit,
            "to_ids": to_ids,
            "from_unit_id": from_unit,
            "from_ids": from_ids,
            "overdue_since": first or facts.occurred_at,
            "new_deadline": data.get("next_rung_at"),
        },
        [to_unit, from_unit],
        [*to_ids, *from_ids],
    )


async def trial_context(
    pool: asyncpg.Pool,
    facts: EventFacts,
    *,
    kind: str,
    locale: str,
    recipient_id: str | None,
    base_url: str,
) -> dict[str, Any]:
    """The template context of one (event, kind), for one reader or (recipient None) a channel."""
    view = facts.view
    data = facts.data
    words = WORDS.get(locale, WORDS["da"])
    concerned = await concerned_people(pool, facts.trial_id, facts.seq, kind)

    step_key: str | None = None
    if kind in (NotificationKind.REMINDER, NotificationKind.ESCALATION):
        step_key = str(data.get("step") or "approval")
    elif kind == NotificationKind.CHECK_IN_REMINDER:
        step_key = "check_in"

    escalation: dict[str, Any] | None = None
    unit_ids = [facts.unit_id]
    person_ids: list[str | None] = [
        recipient_id,
        facts.actor_id,
        facts.on_behalf_of,
        view.proposer_id,
        *view.participants,
        *concerned,
        *[str(p) for p in data.get("missing") or []],
    ]
    if kind == NotificationKind.ESCALATION and facts.kind == "escalated":
        escalation, more_units, more_people = await _escalation_facts(pool, facts)
        unit_ids += more_units
        person_ids += more_people

    contacts = await directory_queries.contacts(pool, (p for p in person_ids if p))
    units = await directory_queries.unit_names(pool, unit_ids)

    actor = _name(contacts, facts.actor_id) or words["someone"]
    principal = _name(contacts, facts.on_behalf_of)
    if principal and facts.on_behalf_of != facts.actor_id:
        actor = f"{actor} ({words['on_behalf']} {principal})"

    deadlines = view.deadlines
    step = None
    if step_key is not None:
        step = {
            "key": step_key,
            "label": STEP_LABELS.get(locale, STEP_LABELS["da"]).get(step_key, step_key),
            "due": getattr(deadlines, _STEP_DUE.get(step_key, ""), None),
        }
    if escalation is not None:
        escalation = {
            **escalation,
            "unit_name": units.get(escalation["unit_id"], escalation["unit_id"]),
            "to_names": _names(contacts, escalation["to_ids"]),
            "from_unit_name": units.get(escalation["from_unit_id"], escalation["from_unit_id"]),
            "from_names": _names(contacts, escalation["from_ids"]),
        }

    role = None
    if recipient_id is not None:
        if recipient_id == view.proposer_id:
            role = "proposer"
        elif recipient_id in view.participants:
            role = "participant"
        else:
            role = "leader"
    recipient = None
    if recipient_id is not None:
        recipient = {"id": recipient_id, "name": _name(contacts, recipient_id) or ""}
    proposal = view.proposal
    return {
        "recipient": recipient,
        "recipient_role": role,
        "trial": {
            "id": str(view.trial_id),
            "title": proposal.title,
            "unit_name": units.get(facts.unit_id, facts.unit_id),
            "proposer_name": _name(contacts, view.proposer_id) or "",
            "participant_names": _names(contacts, view.participants),
            "iteration": view.iteration,
            "phase": view.phase.value,
            "change": proposal.change,
            "question": proposal.question,
            "prediction": proposal.prediction,
            "planned_start": proposal.planned_start,
            "planned_duration": str(proposal.planned_duration),
            "measures": [f"{m.name} ({m.unit})" if m.unit else m.name for m in proposal.measures],
            "required_approvals": view.required_approvals,
            "approvals_count": len(view.approvals),
            "approval_due": deadlines.approval_due,
            "starts_at": deadlines.starts_at,
            "ends_at": deadlines.ends_at,
            "check_in_due": deadlines.check_in_due,
            "evaluation_due": deadlines.evaluation_due,
            "decision_due": deadlines.decision_due,
            "follow_up_at": deadlines.follow_up_at,
        },
        "event": {
            "kind": facts.kind,
            "seq": facts.seq,
            "occurred_at": facts.occurred_at,
            "actor": actor,
            "comment": data.get("comment"),
            "reason": data.get("reason"),
            "missing_names": _names(contacts, [str(p) for p in data.get("missing") or []]),
            "data": data,
        },
        "step": step,
        "escalation": escalation,
        "people": _names(contacts, concerned),
        "link": trial_link(base_url, view.trial_id),
        "digest": None,
    }


async def digest_context(
    pool: asyncpg.Pool,
    digest: LeaderDigest,
    *,
    locale: str,
    recipient: Contact,
    base_url: str,
) -> dict[str, Any]:
    """A leader's weekly digest: titles and unit names looked up now, one link per trial."""
    trial_ids = [
        *(i.trial_id for i in digest.escalations),
        *(i.trial_id for i in digest.approvals),
        *(i.trial_id for i in digest.stalled),
    ]
    rows = await pool.fetch(
        "SELECT id, title, unit_id FROM trials WHERE id = ANY($1::uuid[])", trial_ids
    )
    trials = {r["id"]: r for r in rows}
    units = await directory_queries.unit_names(pool, (r["unit_id"] for r in rows))
    labels = STEP_LABELS.get(locale, STEP_LABELS["da"])

    def item(trial_id: UUID, **extra: Any) -> dict[str, Any]:
        row = trials.get(trial_id)
        unit = row["unit_id"] if row else ""
        return {
            "title": row["title"] if row else str(trial_id),
            "unit_name": units.get(unit, unit),
            "link": trial_link(base_url, trial_id),
            **extra,
        }

    week_number = int(digest.week.split("-W")[1])
    return {
        "recipient": {"id": recipient.id, "name": recipient.name},
        "recipient_role": "leader",
        "trial": None,
        "event": None,
        "step": None,
        "escalation": None,
        "people": [],
        "link": f"{base_url.rstrip('/')}/trials",
        "digest": {
            "week": digest.week,
            "week_number": week_number,
            "total": len(set(trial_ids)),
            "escalations": [
                item(
                    e.trial_id,
                    step_label=labels.get(e.step, e.step),
                    level=e.level,
                )
                for e in digest.escalations
            ],
            "approvals": [item(a.trial_id, due_at=a.due_at) for a in digest.approvals],
            "stalled": [item(s.trial_id, since=s.since) for s in digest.stalled],
        },
    }


# --- the messages -------------------------------------------------------------------------------


def mail_domain(mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "provehandling.local"


def message_id_for(idempotency_key: str, mail_from: str) -> str:
    """The same Message-ID for every attempt of a notification, so a receiver can deduplicate
    the one that slips through when a dispatcher dies between sending and recording it."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{mail_domain(mail_from)}>"


def email_message(
    *,
    subject: str,
    text: str,
    html: str,
    to: Contact,
    mail_from: str,
    message_id: str,
    idempotency_key: str,
    locale: str,
    now: datetime | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = Address(display_name=to.name, addr_spec=to.email)
    message["Subject"] = subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id
    message["Content-Language"] = locale
    message["Auto-Submitted"] = "auto-generated"
    message["X-Provehandling-Notification"] = idempotency_key
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def teams_card(
    *,
    subject: str,
    summary: str,
    facts: list[tuple[str, str]],
    link: str,
    open_label: str,
) -> dict[str, Any]:
    """The body the Power Automate 'When a Teams webhook request is received' flow expects."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "size": "Medium",
            "weight": "Bolder",
            "text": subject,
            "wrap": True,
        },
        {"type": "TextBlock", "text": summary, "wrap": True},
    ]
    if facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": title, "value": value} for title, value in facts if value],
            }
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                    "actions": [{"type": "Action.OpenUrl", "title": open_label, "url": link}],
                },
            }
        ],
    }


async def webhook_body(pool: asyncpg.Pool, delivery: ClaimedWebhook) -> bytes:
    """The event as JSON, ids only; the same bytes on every retry of the delivery."""
    row = await pool.fetchrow(
        """
        SELECT seq, iteration, kind, phase, occurred_at, actor_id, on_behalf_of, data
        FROM trial_events WHERE trial_id = $1 AND seq = $2
        """,
        delivery.trial_id,
        delivery.seq,
    )
    if row is None:
        raise MissingData(f"event {delivery.seq} of trial {delivery.trial_id} is not recorded")
    body = WebhookBody(
        id=delivery.delivery_id,
        organisation_id=delivery.organisation_id,
        trial_id=delivery.trial_id,
        seq=row["seq"],
        iteration=row["iteration"],
        kind=row["kind"],
        phase=row["phase"],
        occurred_at=row["occurred_at"],
        actor_id=row["actor_id"],
        on_behalf_of=row["on_behalf_of"],
        data=dict(row["data"] or {}),
    )
    return body.model_dump_json().encode("utf-8")
