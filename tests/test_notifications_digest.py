"""The weekly digest: exactly what waits on each leader, nothing for a leader with nothing; the
DigestWorkflow on the test worker; the Temporal Schedule (dev server only: the time-skipping
server has no schedules).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from notifications.dev_smtp import DevMailServer
from notifications.digest import iso_week, send_weekly_digests
from schemas.commands import ApprovalDecision
from schemas.duration import Duration
from schemas.notifications import DigestRequest, DigestRun, LeaderDigest
from schemas.trial import TrialView
from tests.factory import proposal_for
from tests.helpers import as_, eventually, today, wait_for
from tests.test_notifications_support import (
    HttpReceiver,
    close_trials,
    dispatcher_for,
    mail,
    make_channel_org,
    receiver,
    text_of,
    wait_for_event,
)
from trial_client.client import TrialClient
from workflows.digest import DIGEST_TIME_ZONE, DigestWorkflow, ensure_digest_schedule

__all__ = ["close_trials", "mail", "receiver"]  # fixtures

pytestmark = pytest.mark.usefixtures("close_trials")

# Approvals and check-ins escalate after a few seconds (real ones on the dev server), the next
# rung only after an hour; two approvals are needed, so one approval leaves a trial pending.
DIGEST_POLICY = {
    "approval_sla": "6 seconds",
    "reminder_after": "0 seconds",
    "escalation_interval": "1 hours",
    "max_escalation_levels": 2,
    "required_approvals": 2,
    "stall_after": "6 seconds",
    "evaluation_sla": "1 hours",
    "decision_sla": "1 hours",
    "follow_up_after": "1 days",
}


@pytest.fixture
def dev_server_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--server") != "dev":
        pytest.skip("Temporal's time-skipping test server does not implement schedules")


def approve(person: str) -> ApprovalDecision:
    return ApprovalDecision(actor=as_(person), decision="approve")


async def test_digest_lists_exactly_what_is_pending_and_nothing_for_the_rest(
    env: WorkflowEnvironment,
    trials: TrialClient,
    pool: asyncpg.Pool,
    task_queue: str,
    mail: DevMailServer,
    receiver: HttpReceiver,
) -> None:
    c = await make_channel_org(pool, receiver, DIGEST_POLICY, english=("area_chief",))
    o = c.org
    day = await today(env)
    long = {"planned_duration": Duration.model_validate("4 weeks")}

    # Escalated: waits for approval past the SLA, so it went one level up to the area.
    escalated = await trials.propose(
        as_(o.proposer), proposal_for(o, day, title="Ro ved frokosten", **long)
    )
    # Stalled: running without a check-in past stall_after; its check-in step went to the
    # team's own leaders.
    stalled = await trials.propose(
        as_(o.proposer), proposal_for(o, day, title="Fælles dagsorden", **long)
    )
    for leader in (o.lead_a, o.lead_b):
        await trials.command(stalled.trial_id, "decide_approval", approve(leader))

    def escalated_once(v: TrialView) -> bool:
        return v.escalation_level == 1

    await wait_for(env, trials, escalated.trial_id, escalated_once)
    await wait_for(env, trials, stalled.trial_id, lambda v: v.stalled and escalated_once(v))
    for trial in (escalated.trial_id, stalled.trial_id):  # the read model has caught up
        await wait_for_event(pool, trial, "escalated")

    # Pending: proposed just now, approved by lead_a only, so it waits for lead_b.
    pending = await trials.propose(
        as_(o.proposer), proposal_for(o, day, title="Stille time", **long)
    )
    pending_view = await trials.command(pending.trial_id, "decide_approval", approve(o.lead_a))
    assert pending_view.phase.value == "proposed" and pending_view.escalation_level == 0

    week = iso_week(day)
    result = await send_weekly_digests(pool, DigestRequest(week=week, on=day, organisations=[o.id]))
    assert result.digests_enqueued == 4 and result.already_enqueued == 0
    rows = await pool.fetch(
        """
        SELECT recipient_id, idempotency_key, payload FROM notifications
        WHERE organisation_id = $1 AND kind = 'digest' ORDER BY recipient_id
        """,
        o.id,
    )
    digests = {r["recipient_id"]: LeaderDigest.model_validate(r["payload"]) for r in rows}
    assert {r["recipient_id"]: r["idempotency_key"] for r in rows} == {
        p: f"digest:{p}:{week}" for p in (o.lead_a, o.lead_b, o.area_chief, o.director)
    }
    assert o.other_lead not in digests  # leads a unit with nothing pending

    def listed(person: str) -> dict[str, list[object]]:
        d = digests[person]
        return {
            "escalations": [(e.trial_id, e.step, e.level) for e in d.escalations],
            "approvals": [a.trial_id for a in d.approvals],
            "stalled": [s.trial_id for s in d.stalled],
        }

    t_esc, t_stall, t_pending = escalated.trial_id, stalled.trial_id, pending.trial_id
    assert listed(o.lead_a) == {
        "escalations": [(t_stall, "check_in", 1)],
        "approvals": [t_esc],  # lead_a already approved the pending one
        "stalled": [],  # listed once, as the escalation it is for them
    }
    assert listed(o.lead_b) == {
        "escalations": [(t_stall, "check_in", 1)],
        "approvals": [t_esc, t_pending],  # the earlier deadline first
        "stalled": [],
    }
    assert listed(o.area_chief) == {
        "escalations": [(t_esc, "approval", 1)],
        "approvals": [],
        "stalled": [t_stall],  # in the team, below the area
    }
    assert listed(o.director) == {"escalations": [], "approvals": [], "stalled": [t_stall]}

    again = await send_weekly_digests(pool, DigestRequest(week=week, on=day, organisations=[o.id]))
    assert again.digests_enqueued == 0 and again.already_enqueued == 4

    async with dispatcher_for(pool, mail, o.id) as dispatcher:
        await dispatcher.drain_once()
    weekly = [
        m for m in mail.messages if str(m["Subject"]).startswith(("Ugeoversigt", "Weekly digest"))
    ]
    assert sorted(str(m["To"]) for m in weekly) == sorted(
        f"{c.name(p)} <{c.email(p)}>" for p in (o.lead_a, o.lead_b, o.area_chief, o.director)
    )
    [lead_b_mail] = [m for m in weekly if c.email(o.lead_b) in str(m["To"])]
    number = int(week.split("-W")[1])
    assert str(lead_b_mail["Subject"]) == f"Ugeoversigt {week}: 3 prøvehandlinger venter på dig"
    text = text_of(lead_b_mail)
    assert f"i uge {number}." in text
    escalations, rest = text.split("Venter på din godkendelse:")
    approvals, _ = rest.split("Venlig hilsen")
    assert "«Fælles dagsorden» (Hjemmepleje Nord) venter på en statusmelding, trin 1" in escalations
    assert approvals.index("«Ro ved frokosten»") < approvals.index("«Stille time»")
    assert "Gået i stå" not in text
    [chief_mail] = [m for m in weekly if c.email(o.area_chief) in str(m["To"])]
    chief = text_of(chief_mail)
    assert str(chief_mail["Subject"]) == f"Weekly digest {week}: 2 trials are waiting for you"
    assert "“Ro ved frokosten” (Hjemmepleje Nord) is waiting for approval, level 1" in chief
    assert "Stalled in your units:" in chief and "“Fælles dagsorden”" in chief
    assert f"/trials/{t_stall}" in chief

    # The workflow the schedule starts does the same, for a week of its own.
    handle = await env.client.start_workflow(
        DigestWorkflow.run,
        DigestRun(week="2000-W01", organisations=[o.id]),
        id=f"digest-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=1),
    )

    async def completed() -> bool:  # describe, not result(): that would let time skip
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    await eventually(completed)
    run = await handle.result()
    assert run.week == "2000-W01" and run.digests_enqueued == 4
    keys = await pool.fetch(
        "SELECT recipient_id FROM notifications WHERE idempotency_key LIKE 'digest:%:2000-W01'"
        " AND organisation_id = $1",
        o.id,
    )
    assert {r["recipient_id"] for r in keys} == {o.lead_a, o.lead_b, o.area_chief, o.director}


async def test_weekly_schedule_is_created_and_updated_idempotently(
    env: WorkflowEnvironment, task_queue: str, dev_server_only: None
) -> None:
    schedule_id = f"digest-schedule-test-{uuid.uuid4().hex[:8]}"
    await ensure_digest_schedule(env.client, task_queue, schedule_id=schedule_id)
    await ensure_digest_schedule(env.client, task_queue, schedule_id=schedule_id)  # no error
    handle = env.client.get_schedule_handle(schedule_id)
    try:
        described = await handle.describe()
        spec = described.schedule.spec
        assert spec.time_zone_name == DIGEST_TIME_ZONE == "Europe/Copenhagen"
        [calendar] = spec.calendars
        assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 1)]  # Monday
        assert [(r.start, r.end) for r in calendar.hour] == [(7, 7)]
        assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "DigestWorkflow" and action.task_queue == task_queue
        upcoming = described.info.next_action_times[0]
        local = upcoming.astimezone(ZoneInfo(DIGEST_TIME_ZONE))
        assert (local.weekday(), local.hour, local.minute) == (0, 7, 0)

        await ensure_digest_schedule(env.client, "another-queue", schedule_id=schedule_id)
        updated = (await handle.describe()).schedule.action
        assert isinstance(updated, ScheduleActionStartWorkflow)
        assert updated.task_queue == "another-queue"
    finally:
        await handle.delete()
