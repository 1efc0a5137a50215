"""Templates, dates, Teams cards and webhook signatures, without servers."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest

from notifications.content import (
    STEP_LABELS,
    email_message,
    message_id_for,
    teams_card,
)
from notifications.render import Renderer, format_duration, format_when, join_names
from notifications.signing import sign, verify
from schemas.notifications import LOCALES, MESSAGE_KINDS
from schemas.trial import NotificationKind
from store.directory_queries import Contact

WHEN = datetime(2026, 3, 10, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Copenhagen


def sample_context(kind: str, locale: str, *, title: str = "Morgenhuddle") -> dict[str, Any]:
    """The keys content.trial_context/digest_context give every template, with sample values."""
    step_key = {"reminder": "approval", "escalation": "approval", "check_in_reminder": "check_in"}
    key = step_key.get(kind)
    event_kind = {
        "outcome": "adopted",
        "evaluation_requested": "aborted",
        "escalation": "escalated",
    }.get(kind, "proposed")
    return {
        "recipient": {"id": "anne", "name": "Anne Holm"},
        "recipient_role": "participant",
        "trial": {
            "id": "7d8c",
            "title": title,
            "unit_name": "Hjemmeplejen Nord",
            "proposer_name": "Sofie Madsen",
            "participant_names": ["Mads Kristensen", "María González"],
            "iteration": 1,
            "phase": "proposed",
            "change": "Stående huddle kl. 7.45",
            "question": "Bliver overleveringen kortere?",
            "prediction": "Fra 25 til 15 minutter",
            "planned_start": date(2026, 3, 16),
            "planned_duration": "6 weeks",
            "measures": ["overlevering (minutter)"],
            "required_approvals": 2,
            "approvals_count": 0,
            "approval_due": WHEN,
            "starts_at": WHEN,
            "ends_at": WHEN,
            "check_in_due": WHEN,
            "evaluation_due": WHEN,
            "decision_due": WHEN,
            "follow_up_at": WHEN,
        },
        "event": {
            "kind": event_kind,
            "seq": 3,
            "occurred_at": WHEN,
            "actor": "Mette Lund",
            "comment": "Godt forslag",
            "reason": "Sygdom i teamet",
            "missing_names": ["Mads Kristensen"],
            "data": {
                "starts_at": WHEN.isoformat(),
                "ends_at": WHEN.isoformat(),
                "since": WHEN.isoformat(),
                "answer_by": WHEN.isoformat(),
                "by": "2 weeks",
                "from": WHEN.isoformat(),
                "evaluations": 2,
                "next_iteration": 2,
            },
        },
        "step": None
        if key is None
        else {"key": key, "label": STEP_LABELS[locale][key], "due": WHEN},
        "escalation": None
        if kind != "escalation"
        else {
            "level": 2,
            "unit_name": "Sundhed og Omsorg",
            "to_names": ["Mette Lund"],
            "from_unit_name": "Hjemmeplejen Nord",
            "from_names": ["Anne Holm", "Tove Jessen"],
            "overdue_since": WHEN,
            "new_deadline": WHEN,
        },
        "people": ["Anne Holm"],
        "link": "https://prove.example/trials/7d8c",
        "digest": None
        if kind != "digest"
        else {
            "week": "2026-W11",
            "week_number": 11,
            "total": 2,
            "escalations": [
                {
                    "title": title,
                    "unit_name": "Hjemmeplejen Nord",
                    "link": "https://prove.example/trials/1",
                    "step_label": STEP_LABELS[locale]["approval"],
                    "level": 1,
                }
            ],
            "approvals": [
                {
                    "title": "Ro ved frokost",
                    "unit_name": "Dagtilbud Syd",
                    "link": "https://prove.example/trials/2",
                    "due_at": WHEN,
                }
            ],
            "stalled": [],
        },
    }


def test_every_kind_has_a_template_in_both_languages() -> None:
    renderer = Renderer()
    for kind in MESSAGE_KINDS:
        for locale in LOCALES:
            assert renderer.has_template(kind, locale), f"{locale}/{kind}.txt.j2 is missing"
    assert {k.value for k in NotificationKind} <= set(MESSAGE_KINDS)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_every_template_renders(kind: str, locale: str) -> None:
    message = Renderer().render(kind, locale, sample_context(kind, locale))
    assert message.subject and "\n" not in message.subject
    assert message.summary
    for text in (message.subject, message.text, message.html):
        assert "{{" not in text and "{%" not in text and "None" not in text
    assert "https://prove.example/" in message.text
    assert 'href="https://prove.example/' in message.html
    greeting = "Hej Anne Holm" if locale == "da" else "Hi Anne Holm"
    assert message.text.startswith(greeting)
    if kind != "digest":
        title = "«Morgenhuddle»" if locale == "da" else "“Morgenhuddle”"
        assert title in message.subject


def test_danish_and_english_wording() -> None:
    renderer = Renderer()
    da = renderer.render("approval_requested", "da", sample_context("approval_requested", "da"))
    en = renderer.render("approval_requested", "en", sample_context("approval_requested", "en"))
    assert da.subject == "Godkend prøvehandlingen «Morgenhuddle»"
    assert en.subject == "Please approve the trial “Morgenhuddle”"
    assert "Svar gerne senest tirsdag den 10. marts 2026 kl. 09.30" in da.text
    assert "Please answer by Tuesday 10 March 2026 at 09:30" in en.text
    assert "- Deltagere: Mads Kristensen og María González" in da.text
    assert "<li>Deltagere: Mads Kristensen og María González</li>" in da.html

    esc = renderer.render("escalation", "da", sample_context("escalation", "da"))
    assert esc.subject.startswith("Eskaleret til dig (trin 2)")
    assert "Sagen kommer fra Hjemmeplejen Nord (Anne Holm og Tove Jessen)" in esc.text
    assert "Ny frist: tirsdag den 10. marts 2026 kl. 09.30" in esc.text


def test_html_is_escaped_and_text_is_not() -> None:
    context = sample_context("approved", "en", title="<b>Less & more</b>")
    message = Renderer().render("approved", "en", context)
    assert "“<b>Less & more</b>”" in message.text
    assert "&lt;b&gt;Less &amp; more&lt;/b&gt;" in message.html
    assert "<b>Less" not in message.html


def test_dates_durations_and_names() -> None:
    assert format_when(WHEN, "da") == "tirsdag den 10. marts 2026 kl. 09.30"
    assert format_when(WHEN.isoformat(), "en") == "Tuesday 10 March 2026 at 09:30"
    assert format_when(date(2026, 12, 24), "da") == "torsdag den 24. december 2026"
    assert format_when(None, "da") == ""
    summer = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)  # CEST: 07:00
    assert format_when(summer, "da").endswith("kl. 07.00")
    assert format_duration("5 working days", "da") == "5 arbejdsdage"
    assert format_duration("1 weeks", "da") == "1 uge"
    assert format_duration("2 weeks", "en") == "2 weeks"
    assert join_names(["A", "B", "C"], "da") == "A, B og C"
    assert join_names(["A", "B"], "en") == "A and B"


def test_email_message_has_both_parts_and_a_stable_message_id() -> None:
    key = "0b5e:3:approved:anne"
    message_id = message_id_for(key, "Prøvehandling <noreply@provehandling.local>")
    assert message_id == message_id_for(key, "Prøvehandling <noreply@provehandling.local>")
    assert message_id != message_id_for(key + "x", "noreply@provehandling.local")
    assert message_id.startswith("<") and message_id.endswith("@provehandling.local>")
    rendered = Renderer().render("approved", "da", sample_context("approved", "da"))
    message = email_message(
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        to=Contact(id="anne", organisation_id="o", name="Anne Holm", email="a@x.dk", locale="da"),
        mail_from="Prøvehandling <noreply@provehandling.local>",
        message_id=message_id,
        idempotency_key=key,
        locale="da",
    )
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == message_id
    assert parsed["To"] == "Anne Holm <a@x.dk>"
    assert parsed["Subject"] == "Prøvehandlingen «Morgenhuddle» er godkendt"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


def test_teams_card_is_an_adaptive_card_for_power_automate() -> None:
    card = teams_card(
        subject="Titel",
        summary="Hvad der skete",
        facts=[("Enhed", "Hjemmeplejen Nord"), ("Tom", "")],
        link="https://prove.example/trials/1",
        open_label="Åbn",
    )
    assert card["type"] == "message"
    [attachment] = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert content["type"] == "AdaptiveCard" and content["version"] == "1.4"
    assert content["actions"] == [
        {"type": "Action.OpenUrl", "title": "Åbn", "url": "https://prove.example/trials/1"}
    ]
    assert content["body"][2]["facts"] == [{"title": "Enhed", "value": "Hjemmeplejen Nord"}]
    json.dumps(card)  # serialisable as it is posted


def test_signature_verifies_and_tampering_does_not() -> None:
    secret = "s3cret-for-the-integration"
    body = b'{"id":"1","kind":"approved"}'
    stamp = int(time.time())
    signature = sign(secret, stamp, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(secret, stamp, body, signature)
    assert verify(secret, str(stamp), body.decode(), signature)
    assert not verify(secret, stamp, body.replace(b"approved", b"rejected"), signature)
    assert not verify("another-secret-entirely", stamp, body, signature)
    assert not verify(secret, stamp + 1, body, signature)
    assert not verify(secret, stamp - 3600, body, sign(secret, stamp - 3600, body))  # replayed
    assert verify(secret, stamp - 3600, body, sign(secret, stamp - 3600, body), tolerance=7200)
    assert not verify(secret, "not-a-number", body, signature)
