"""Delivery against real components: trials driven through Temporal, a real SMTP server (aiosmtpd),
a real HTTP receiver for Teams cards and webhooks, and the Dispatcher draining the outbox.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from email.message import EmailMessage
from uuid import UUID

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from notifications.dev_smtp import DevMailServer
from notifications.dispatcher import Dispatcher
from notifications.render import format_when
from notifications.signing import verify
from schemas.commands import ApprovalDecision, CheckIn, FollowUpAnswer, OutcomeDecision
from schemas.duration import Duration
from schemas.notifications import Channel, DeliveryStatus
from schemas.trial import Phase
from store.outbox import notifications_of
from tests.factory import FAST_POLICY, proposal_for
from tests.helpers import as_, evaluation_by, eventually, today, wait_for
from tests.test_notifications_support import (
    PUBLIC_BASE_URL,
    ChannelOrg,
    HttpReceiver,
    close_trials,
    dispatcher_for,
    html_of,
    mail,
    make_channel_org,
    receiver,
    text_of,
    wait_for_event,
)
from trial_client.client import TrialClient

__all__ = ["close_trials", "mail", "receiver"]  # fixtures

pytestmark = pytest.mark.usefixtures("close_trials")


def inbox(messages: list[EmailMessage], c: ChannelOrg) -> dict[str, list[str]]:
    """person id -> sorted subjects of the messages, for the org's people who received any
    (one drain sends concurrently, so the order within it is not defined)."""
    found: dict[str, list[str]] = {}
    for person in c.org.people:
        for message in messages:
            if f"<{c.email(person.id)}>" in str(message["To"]):
                found.setdefault(person.id, []).append(str(message["Subject"]))
    return {person: sorted(subjects) for person, subjects in found.items()}


async def drain(dispatcher: Dispatcher, mail: DevMailServer, c: ChannelOrg) -> dict[str, list[str]]:
    """Drain once; who received what in this drain."""
    before = len(mail.messages)
    await dispatcher.drain_once()
    return inbox(mail.messages[before:], c)


def teams_cards(receiver: HttpReceiver, c: ChannelOrg) -> list[dict[str, object]]:
    return [r.json() for r in receiver.at(c.teams_path)]


def card_title(card: dict[str, object]) -> str:
    attachments = card["attachments"]
    assert isinstance(attachments, list)
    return str(attachments[0]["content"]["body"][0]["text"])


async def test_lifecycle_reaches_the_right_people_in_their_language(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    title = "Morgenhuddle på ti minutter"
    proposal = proposal_for(
        o, await today(env), planned_duration=Duration.model_validate("5 seconds")
    )
    async with dispatcher_for(pool, mail, o.id) as dispatcher:
        view = await trials.propose(as_(o.proposer), proposal)
        trial = view.trial_id
        link = f"{PUBLIC_BASE_URL}/trials/{trial}"

        assert await drain(dispatcher, mail, c) == {
            o.lead_a: [f"Godkend prøvehandlingen «{title}»"],
            o.lead_b: [f"Godkend prøvehandlingen «{title}»"],
        }
        [request] = mail.to(c.email(o.lead_a))
        body = text_of(request)
        assert body.startswith(f"Hej {c.name(o.lead_a)}")
        assert (
            f"{c.name(o.proposer)} har foreslået prøvehandlingen «{title}» i Hjemmepleje Nord"
            in body
        )
        assert link in body and f'href="{link}"' in html_of(request)
        assert "Deltagere: " + f"{c.name(o.part1)} og {c.name(o.part2)}" in body

        view = await trials.command(
            trial, "decide_approval", ApprovalDecision(actor=as_(o.lead_a), decision="approve")
        )
        assert view.phase is Phase.RUNNING
        got = await drain(dispatcher, mail, c)
        approved_da = f"Prøvehandlingen «{title}» er godkendt"
        starts_da = f"Prøvehandlingen «{title}» starter nu"
        assert got == {
            o.proposer: sorted([approved_da, starts_da]),
            o.part1: sorted([approved_da, starts_da]),
            o.part2: sorted(  # María reads English
                [f"The trial “{title}” has been approved", f"The trial “{title}” starts now"]
            ),
        }
        [english] = [
            text_of(m) for m in mail.to(c.email(o.part2)) if "approved" in str(m["Subject"])
        ]
        assert english.startswith(f"Hi {c.name(o.part2)}")
        assert f"{c.name(o.lead_a)} has approved the trial" in english

        await trials.command(trial, "check_in", CheckIn(actor=as_(o.part1), note="Godt i gang"))
        assert await drain(dispatcher, mail, c) == {}  # a check-in notifies nobody

        view = await wait_for(env, trials, trial, lambda v: v.phase is Phase.EVALUATING)
        await wait_for_event(pool, trial, "ended")  # the query may run ahead of the read model
        got = await drain(dispatcher, mail, c)
        evaluate_da = f"Evaluér prøvehandlingen «{title}»"
        assert got == {
            o.proposer: [evaluate_da],
            o.part1: [evaluate_da],
            o.part2: [f"Please evaluate the trial “{title}”"],
        }

        for person in (o.proposer, o.part1, o.part2):
            view = await trials.command(trial, "evaluate", evaluation_by(person))
        assert view.phase is Phase.DECIDING
        got = await drain(dispatcher, mail, c)
        decide_da = f"Beslut: hvad sker der med prøvehandlingen «{title}»?"
        assert got == {o.lead_a: [decide_da], o.lead_b: [decide_da]}

        view = await trials.command(
            trial,
            "decide_outcome",
            OutcomeDecision(actor=as_(o.lead_b), decision="adopt", comment="Vi fortsætter"),
        )
        got = await drain(dispatcher, mail, c)
        adopted_da = f"Prøvehandlingen «{title}» bliver implementeret"
        assert got == {
            o.proposer: [adopted_da],
            o.part1: [adopted_da],
            o.part2: [f"The trial “{title}” is adopted"],
        }
        assert "Kommentar: Vi fortsætter" in text_of(mail.to(c.email(o.part1))[-1])

        view = await wait_for(
            env,
            trials,
            trial,
            lambda v: v.follow_up is not None and v.follow_up.requested_at is not None,
        )
        await wait_for_event(pool, trial, "follow_up_requested")
        assert await drain(dispatcher, mail, c) == {
            o.proposer: [f"Bruges ændringen fra «{title}» stadig?"]
        }
        await trials.command(
            trial, "answer_follow_up", FollowUpAnswer(actor=as_(o.proposer), still_in_use=True)
        )
        await dispatcher.drain_once()

    deliveries = await notifications_of(pool, trial)
    emails = [d for d in deliveries if d.channel is Channel.EMAIL]
    assert emails and all(d.status is DeliveryStatus.SENT and d.attempts == 1 for d in emails)

    # One Teams card per (event, kind), to the team's channel, however many people it concerns.
    teams = [d for d in deliveries if d.channel is Channel.TEAMS]
    assert sorted((d.event_seq, d.kind) for d in teams) == sorted(
        {(d.event_seq, d.kind) for d in emails}
    )
    assert all(
        d.recipient_id == f"unit:{o.team}" and d.status is DeliveryStatus.SENT for d in teams
    )
    cards = teams_cards(receiver, c)
    assert len(cards) == len(teams)
    assert f"Godkend prøvehandlingen «{title}»" in [card_title(card) for card in cards]
    first = cards[0]["attachments"][0]["content"]  # type: ignore[index]
    assert first["actions"][0]["url"] == link
    facts = {f["title"]: f["value"] for f in first["body"][2]["facts"]}
    assert facts["Berørte"] == f"{c.name(o.lead_a)} og {c.name(o.lead_b)}"

    # Every event went to the webhook, in order, signed, with ids only.
    events = await pool.fetch(
        "SELECT seq, kind FROM trial_events WHERE trial_id = $1 ORDER BY seq", trial
    )
    hooks = receiver.at(c.hook_path)
    assert [r.json()["seq"] for r in hooks] == [e["seq"] for e in events]
    assert [r.headers["x-provehandling-event"] for r in hooks] == [e["kind"] for e in events]
    for hook in hooks:
        stamp = hook.headers["x-provehandling-timestamp"]
        signature = hook.headers["x-provehandling-signature"]
        assert verify(c.secret, stamp, hook.body, signature)
        assert not verify(c.secret, stamp, hook.body.replace(b'"seq"', b'"Seq"'), signature)
        body = hook.json()
        assert body["id"] == hook.headers["idempotency-key"]
        assert body["trial_id"] == str(trial) and body["organisation_id"] == o.id
        assert c.name(o.proposer) not in hook.body.decode()  # ids, never names
    assert hooks[0].json()["actor_id"] == o.proposer and hooks[0].json()["kind"] == "proposed"
    assert len(mail.messages) == len(emails)
    assert set(mail.by_message_id().values()) == {1}


@pytest.mark.time_skipping_only
async def test_escalation_mail_names_the_rung_whom_it_came_from_and_the_new_deadline(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY, english=("area_chief",))
    o = c.org
    title = "Morgenhuddle på ti minutter"
    view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
    trial = view.trial_id
    async with dispatcher_for(pool, mail, o.id) as dispatcher:
        await dispatcher.drain_once()

        await env.sleep(timedelta(minutes=31))  # reminder_after 30 minutes
        await wait_for_event(pool, trial, "reminded")
        reminder = f"Påmindelse: prøvehandlingen «{title}» venter på godkendelse"
        assert await drain(dispatcher, mail, c) == {o.lead_a: [reminder], o.lead_b: [reminder]}

        await env.sleep(timedelta(minutes=30))  # approval_sla 1 hour: rung 1, the area
        await wait_for_event(pool, trial, "escalated")
        assert await drain(dispatcher, mail, c) == {
            o.area_chief: [f"Escalated to you (level 1): “{title}” is waiting for approval"]
        }
        first = text_of(mail.to(c.email(o.area_chief))[0])
        leaders = f"{c.name(o.lead_a)} and {c.name(o.lead_b)}"
        assert "has been escalated to level 1 (Sundhed)" in first
        assert f"It comes from Hjemmepleje Nord ({leaders})." in first
        rung1 = await pool.fetchrow(
            "SELECT occurred_at, data FROM trial_events WHERE trial_id = $1 AND kind = 'escalated'",
            trial,
        )
        assert rung1 is not None
        assert f"since {format_when(rung1['occurred_at'], 'en')}" in first
        assert f"New deadline: {format_when(rung1['data']['next_rung_at'], 'en')}." in first

        await env.sleep(timedelta(hours=1))  # escalation_interval: rung 2, the top
        await wait_for_event(pool, trial, "escalated", count=2)
        assert await drain(dispatcher, mail, c) == {
            o.director: [f"Eskaleret til dig (trin 2): «{title}» venter på godkendelse"]
        }
        second = text_of(mail.to(c.email(o.director))[0])
        assert f"Sagen kommer fra Sundhed ({c.name(o.area_chief)})." in second
        assert f"siden {format_when(rung1['occurred_at'], 'da')}" in second
        assert "Dette er sidste trin på eskaleringsstigen" in second  # max_escalation_levels 2

    titles = [card_title(card) for card in teams_cards(receiver, c)]
    assert titles.count(f"Eskaleret til dig (trin 1): «{title}» venter på godkendelse") == 1
    assert titles.count(f"Eskaleret til dig (trin 2): «{title}» venter på godkendelse") == 1


async def test_smtp_down_for_a_while_then_up_delivers_each_message_once(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
    await trials.command(
        view.trial_id, "decide_approval", ApprovalDecision(actor=as_(o.lead_a), decision="approve")
    )
    await mail.stop()
    async with dispatcher_for(pool, mail, o.id, backoff_seconds=1.0, jitter=0.0) as dispatcher:
        first = await dispatcher.drain_once()
        assert first.sent and first.retried  # Teams and webhooks go; e-mail waits
        rows = await notifications_of(pool, view.trial_id)
        emails = [d for d in rows if d.channel is Channel.EMAIL]
        assert len(emails) == 8  # 2 approval requests, 3 approved, 3 trial starts
        for d in emails:
            assert d.status is DeliveryStatus.PENDING and d.attempts == 1
            assert d.last_error and "unavailable" in d.last_error
            assert d.next_attempt_at is not None

        again = await dispatcher.drain_once()  # the back-off has not passed: nothing is tried
        assert again.sent == again.retried == again.failed == 0

        await mail.start()
        await asyncio.sleep(1.2)
        second = await dispatcher.drain_once()
        assert second.sent == 8 and second.retried == 0
        assert (await dispatcher.drain_once()).sent == 0  # nothing left

    assert len(mail.messages) == 8
    assert set(mail.by_message_id().values()) == {1}
    assert len(list(mail.folder.glob("*.eml"))) == 8  # what `make run` keeps under .data/
    rows = await notifications_of(pool, view.trial_id)
    emails = [d for d in rows if d.channel is Channel.EMAIL]
    assert len(emails) == 8
    assert all(d.status is DeliveryStatus.SENT and d.attempts == 2 for d in emails)
    assert dispatcher.stats.get("email", "retry") == 8
    assert dispatcher.stats.get("email", "sent") == 8


async def test_receiver_answering_500_is_retried_with_back_off_then_failed(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY, webhook_events=["proposed"])
    o = c.org
    receiver.answer(c.hook_path, then=500)
    view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
    async with dispatcher_for(
        pool, mail, o.id, max_attempts=3, backoff_seconds=1.0, jitter=0.0
    ) as dispatcher:
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 1
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 1  # backing off 1 s
        await asyncio.sleep(1.3)
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 2
        await asyncio.sleep(1.0)
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 2  # the second wait is twice as long: 2 s
        await asyncio.sleep(1.3)
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 3
        await asyncio.sleep(0.5)
        await dispatcher.drain_once()
        assert len(receiver.at(c.hook_path)) == 3  # failed for good: never tried again

        [hook] = [d for d in await notifications_of(pool, view.trial_id) if d.channel == "webhook"]
        assert hook.status is DeliveryStatus.FAILED and hook.attempts == 3
        assert hook.last_error is not None and "answered 500" in hook.last_error
        assert hook.kind == "proposed" and hook.recipient_id == "integration"
        assert dispatcher.stats.get("webhook", "failed") == 1
        assert dispatcher.stats.get("webhook", "retry") == 2
        attempts = receiver.at(c.hook_path)
        assert len({r.headers["idempotency-key"] for r in attempts}) == 1
        assert len({r.body for r in attempts}) == 1  # the same delivery each time

        # The trial never waited on the webhook.
        view = await trials.command(
            view.trial_id,
            "decide_approval",
            ApprovalDecision(actor=as_(o.lead_a), decision="approve"),
        )
        assert view.phase is Phase.RUNNING
        await dispatcher.drain_once()
        emails = [d for d in await notifications_of(pool, view.trial_id) if d.channel == "email"]
        assert emails and all(d.status is DeliveryStatus.SENT for d in emails)


async def test_webhooks_go_in_per_trial_order_across_retries(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    receiver.answer(c.hook_path, 503)  # the first request fails, then all succeed
    view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
    await trials.command(
        view.trial_id, "decide_approval", ApprovalDecision(actor=as_(o.lead_a), decision="approve")
    )  # events 2 (approval given), 3 (approved) and 4 (started)
    async with dispatcher_for(pool, mail, o.id, backoff_seconds=0.2) as dispatcher:
        await dispatcher.drain_once()
        assert [r.json()["seq"] for r in receiver.at(c.hook_path)] == [1]  # 2-4 wait for 1
        await asyncio.sleep(0.4)
        await dispatcher.drain_once()
    received = receiver.at(c.hook_path)
    assert [r.json()["seq"] for r in received] == [1, 1, 2, 3, 4]
    assert [r.status for r in received] == [503, 200, 200, 200, 200]


async def test_two_dispatchers_draining_at_once_never_send_twice(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    ids: list[UUID] = []
    for _ in range(3):
        view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
        await trials.command(
            view.trial_id,
            "decide_approval",
            ApprovalDecision(actor=as_(o.lead_a), decision="approve"),
        )
        ids.append(view.trial_id)
    async with (
        dispatcher_for(pool, mail, o.id, batch_size=2) as one,
        dispatcher_for(pool, mail, o.id, batch_size=3) as two,
    ):
        reports = await asyncio.gather(one.drain_once(), two.drain_once(), one.drain_once())
    assert all(r.failed == r.retried == 0 for r in reports)
    assert reports[0].sent and reports[1].sent  # both took part

    assert len(mail.messages) == 3 * 8
    assert set(mail.by_message_id().values()) == {1}
    cards = receiver.at(c.teams_path)
    assert len(cards) == 3 * 3  # approval requested, approved, trial starts
    assert len({r.body for r in cards}) == len(cards)
    hooks = [r.json() for r in receiver.at(c.hook_path)]
    assert sorted((h["trial_id"], h["seq"]) for h in hooks) == sorted(
        (str(t), seq) for t in ids for seq in range(1, 5)
    )
    for trial in ids:
        assert [h["seq"] for h in hooks if h["trial_id"] == str(trial)] == [1, 2, 3, 4]
        rows = await notifications_of(pool, trial)
        assert rows and all(d.status is DeliveryStatus.SENT and d.attempts == 1 for d in rows)


async def test_a_recipient_no_longer_in_the_directory_fails_at_once_with_a_reason(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    view = await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))
    await pool.execute("DELETE FROM people WHERE id = $1", o.lead_b)  # erased
    async with dispatcher_for(pool, mail, o.id) as dispatcher:
        report = await dispatcher.drain_once()
    assert report.failed == 1 and report.retried == 0
    rows = {
        d.recipient_id: d
        for d in await notifications_of(pool, view.trial_id)
        if d.channel == "email"
    }
    assert rows[o.lead_a].status is DeliveryStatus.SENT
    failed = rows[o.lead_b]
    assert failed.status is DeliveryStatus.FAILED and failed.attempts == 1
    assert failed.last_error == f"recipient {o.lead_b!r} is no longer in the directory (erased?)"
    assert [str(m["To"]) for m in mail.messages] == [f"{c.name(o.lead_a)} <{c.email(o.lead_a)}>"]
    # The Teams card still names who is concerned, as far as the directory still knows them.
    [card] = [r.json() for r in receiver.at(c.teams_path)]
    facts = {f["title"]: f["value"] for f in card["attachments"][0]["content"]["body"][2]["facts"]}
    assert facts["Berørte"] == c.name(o.lead_a)


async def test_the_running_dispatcher_wakes_on_notify(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    o = c.org
    stop = asyncio.Event()
    async with dispatcher_for(pool, mail, o.id, poll_seconds=60.0) as dispatcher:
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            await asyncio.sleep(0.3)  # it has drained once and now sleeps for a minute
            await trials.propose(as_(o.proposer), proposal_for(o, await today(env)))

            async def both_mailed() -> bool:
                return len(mail.messages) == 2

            await eventually(both_mailed, within=10.0)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10.0)
    assert sorted(str(m["To"]) for m in mail.messages) == sorted(
        f"{c.name(p)} <{c.email(p)}>" for p in (o.lead_a, o.lead_b)
    )


async def test_notifications_of_is_scoped_to_the_organisation(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, FAST_POLICY)
    view = await trials.propose(as_(c.org.proposer), proposal_for(c.org, await today(env)))
    mine = await notifications_of(pool, view.trial_id, c.org.id)
    assert {(d.channel, d.recipient_id) for d in mine} == {
        (Channel.EMAIL, c.org.lead_a),
        (Channel.EMAIL, c.org.lead_b),
        (Channel.TEAMS, f"unit:{c.org.team}"),
        (Channel.WEBHOOK, "integration"),
    }
    assert all(d.status is DeliveryStatus.PENDING for d in mine)
    assert await notifications_of(pool, view.trial_id, "another-organisation") == []
    # Neither the Teams URL nor the webhook secret is part of what the API shows.
    shown = json.dumps([d.model_dump(mode="json") for d in mine])
    assert c.teams_path not in shown and c.secret not in shown
