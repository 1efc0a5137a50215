"""Deadlines in working days, escalation ladders, stall, pause/resume, extend, abort, evaluation
deadline, adapt and the follow-up: weeks of trial on the time-skipping server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from schemas.commands import (
    Abort,
    ApprovalDecision,
    CheckIn,
    Extend,
    OutcomeDecision,
    Pause,
    Resume,
)
from schemas.duration import Duration
from schemas.errors import RefusalType
from schemas.policy import Policy
from schemas.trial import Phase, Step, TrialView
from tests.factory import make_org, proposal_for
from tests.helpers import (
    as_,
    deciding_trial,
    evaluation_by,
    events_of,
    kinds_of,
    outbox_of,
    running_trial,
    today,
    wait_for,
)
from trial_client.client import TrialClient, TrialRefused
from workflows.calendar import BusinessCalendar

pytestmark = pytest.mark.time_skipping_only

DAY = timedelta(days=1)
CALENDAR = BusinessCalendar.for_policy(Policy())


def wd(n: int) -> Duration:
    return Duration.model_validate(f"{n} working days")


def close_to(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) < timedelta(minutes=1)


async def event(pool: asyncpg.Pool, trial_id: Any, kind: str, nth: int = 0) -> asyncpg.Record:
    rows = [e for e in await events_of(pool, trial_id) if e["kind"] == kind]
    assert len(rows) > nth, f"no {kind} event #{nth}"
    return rows[nth]


async def test_approval_escalates_two_levels_once_to_a_substitute(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    day = await today(env)
    org = await make_org(
        pool,
        substitutes=[
            {
                "leader": "area_chief",
                "substitute": "other_lead",
                "from": day,
                "to": day + timedelta(days=365),
            },
        ],
    )
    view = await trials.propose(as_(org.proposer), proposal_for(org, day))
    proposed_at = (await event(pool, view.trial_id, "proposed"))["occurred_at"]

    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.clocks[Step.APPROVAL].level == 2,
        step=DAY,
        attempts=40,
    )
    reminded = await event(pool, view.trial_id, "reminded")
    first = await event(pool, view.trial_id, "escalated", 0)
    second = await event(pool, view.trial_id, "escalated", 1)
    assert close_to(reminded["occurred_at"], CALENDAR.add(proposed_at, wd(3)))
    assert close_to(first["occurred_at"], CALENDAR.add(proposed_at, wd(5)))
    assert close_to(second["occurred_at"], CALENDAR.add(first["occurred_at"], wd(2)))
    assert first["data"]["unit_id"] == org.area
    assert first["data"]["to"] == [org.other_lead]
    assert first["data"]["on_behalf_of"] == [org.area_chief]
    assert second["data"]["unit_id"] == org.top and second["data"]["to"] == [org.director]
    assert view.deadlines.approval_due is not None
    assert close_to(view.deadlines.approval_due, CALENDAR.add(proposed_at, wd(5)))

    outbox = await outbox_of(pool, view.trial_id)
    assert (org.lead_a, "reminder") in outbox and (org.lead_b, "reminder") in outbox
    assert (org.other_lead, "escalation") in outbox and (org.director, "escalation") in outbox
    assert (org.area_chief, "escalation") not in outbox

    # the ladder is bounded: no third rung however long it waits
    await env.sleep(timedelta(days=20))
    assert await kinds_of(pool, view.trial_id) == ["proposed", "reminded", "escalated", "escalated"]

    # the absent leader cannot act; the leader it was escalated to can
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id,
            "decide_approval",
            ApprovalDecision(actor=as_(org.area_chief), decision="approve"),
        )
    assert refused.value.kind is RefusalType.FORBIDDEN
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.director), decision="approve"),
    )
    assert view.phase is Phase.RUNNING


async def test_escalation_passes_a_leaderless_unit_and_stops_at_the_top(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, {"max_escalation_levels": 5}, area_has_leader=False)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.clocks[Step.APPROVAL].exhausted,
        step=DAY,
        attempts=40,
    )
    escalations = [e for e in await events_of(pool, view.trial_id) if e["kind"] == "escalated"]
    assert [e["data"]["unit_id"] for e in escalations] == [org.top]
    assert (await kinds_of(pool, view.trial_id))[-1] == "escalation_exhausted"
    await env.sleep(timedelta(days=30))
    assert (await kinds_of(pool, view.trial_id)).count("escalation_exhausted") == 1


async def test_stall_and_its_escalation(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await running_trial(env, trials, org, duration="10 weeks")
    started_at = view.started_at
    assert started_at is not None and view.deadlines.check_in_due is not None
    assert close_to(view.deadlines.check_in_due, CALENDAR.add(started_at, wd(10)))

    view = await wait_for(env, trials, view.trial_id, lambda v: v.stalled, step=DAY, attempts=30)
    stalled = await event(pool, view.trial_id, "stalled")
    assert close_to(stalled["occurred_at"], CALENDAR.add(started_at, wd(10)))
    view = await wait_for(
        env, trials, view.trial_id, lambda v: v.clocks[Step.CHECK_IN].level >= 1, step=DAY
    )
    escalated = await event(pool, view.trial_id, "escalated")
    assert escalated["data"]["step"] == "check_in"
    assert escalated["data"]["unit_id"] == org.team
    assert sorted(escalated["data"]["to"]) == sorted([org.lead_a, org.lead_b])
    outbox = await outbox_of(pool, view.trial_id)
    assert (org.part1, "check_in_reminder") in outbox
    assert (org.proposer, "stalled") in outbox
    assert (org.lead_b, "escalation") in outbox
    row = await pool.fetchrow("SELECT stalled FROM trials WHERE id = $1", view.trial_id)
    assert row is not None and row["stalled"] is True

    view = await trials.command(
        view.trial_id, "check_in", CheckIn(actor=as_(org.part2), note="Vi er i gang igen")
    )
    assert not view.stalled and view.clocks[Step.CHECK_IN].level == 0
    row = await pool.fetchrow("SELECT stalled FROM trials WHERE id = $1", view.trial_id)
    assert row is not None and row["stalled"] is False


async def test_pause_and_resume_move_the_end_date(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await running_trial(env, trials, org, duration="4 weeks")
    planned_end = view.deadlines.ends_at
    assert planned_end is not None
    view = await trials.command(
        view.trial_id, "pause", Pause(actor=as_(org.proposer), reason="Ferie")
    )
    assert view.phase is Phase.PAUSED and view.deadlines.check_in_due is None
    await env.sleep(timedelta(days=20))
    assert "stalled" not in await kinds_of(pool, view.trial_id)
    view = await trials.command(view.trial_id, "resume", Resume(actor=as_(org.lead_b)))
    assert view.phase is Phase.RUNNING
    assert view.paused_seconds >= timedelta(days=20).total_seconds()
    assert view.deadlines.ends_at == planned_end + timedelta(seconds=view.paused_seconds)
    moved_end = view.deadlines.ends_at
    view = await wait_for(
        env, trials, view.trial_id, lambda v: v.phase is Phase.EVALUATING, step=DAY, attempts=40
    )
    assert view.ended_at is not None and close_to(view.ended_at, moved_end)
    assert view.ended_at > planned_end + timedelta(days=19)


async def test_extend_within_the_maximum_length(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)  # max_trial_length 12 weeks
    view = await running_trial(env, trials, org, duration="4 weeks")
    end = view.deadlines.ends_at
    assert end is not None
    view = await trials.command(
        view.trial_id,
        "extend",
        Extend(actor=as_(org.proposer), by=Duration.model_validate("2 weeks")),
    )
    assert view.deadlines.ends_at == end + timedelta(weeks=2)
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id,
            "extend",
            Extend(actor=as_(org.lead_a), by=Duration.model_validate("7 weeks")),
        )
    assert refused.value.kind is RefusalType.INVALID and refused.value.field == "by"
    assert "maximum trial length of 12 weeks" in refused.value.message
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id,
            "extend",
            Extend(actor=as_(org.outsider), by=Duration.model_validate("1 weeks")),
        )
    assert refused.value.kind is RefusalType.FORBIDDEN
    view = await trials.command(
        view.trial_id,
        "extend",
        Extend(actor=as_(org.lead_a), by=Duration.model_validate("6 weeks")),
    )
    assert view.deadlines.ends_at == end + timedelta(weeks=8)
    assert view.extended_by == ["2 weeks", "6 weeks"]
    assert await kinds_of(pool, view.trial_id) == [
        "proposed",
        "approval_given",
        "approved",
        "started",
        "extended",
        "extended",
    ]


async def test_abort_goes_to_evaluation(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await running_trial(env, trials, org)
    with pytest.raises(Exception, match="reason"):
        Abort.model_validate({"actor": {"person_id": org.lead_b}, "reason": ""})
    view = await trials.command(
        view.trial_id, "abort", Abort(actor=as_(org.lead_b), reason="Personalemangel")
    )
    assert view.phase is Phase.EVALUATING and view.abort_reason == "Personalemangel"
    assert view.ended_at is not None and view.deadlines.evaluation_due is not None
    outbox = await outbox_of(pool, view.trial_id)
    assert (org.part1, "evaluation_requested") in outbox
    assert (org.proposer, "aborted") in outbox
    aborted = await event(pool, view.trial_id, "aborted")
    assert aborted["actor_id"] == org.lead_b and aborted["data"]["reason"] == "Personalemangel"


async def test_evaluation_deadline_moves_on_to_deciding(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await running_trial(env, trials, org, duration="5 seconds")
    view = await wait_for(env, trials, view.trial_id, lambda v: v.phase is Phase.EVALUATING)
    ended_at = view.ended_at
    assert ended_at is not None
    view = await trials.command(view.trial_id, "evaluate", evaluation_by(org.proposer))
    assert view.phase is Phase.EVALUATING
    view = await wait_for(
        env, trials, view.trial_id, lambda v: v.phase is Phase.DECIDING, step=DAY, attempts=30
    )
    closed = await event(pool, view.trial_id, "evaluation_closed")
    assert closed["data"]["reason"] == "evaluation_deadline_passed"
    assert sorted(closed["data"]["missing"]) == sorted([org.part1, org.part2])
    assert close_to(closed["occurred_at"], CALENDAR.add(ended_at, wd(10)))
    escalated = await event(pool, view.trial_id, "escalated")
    assert escalated["data"]["step"] == "evaluation"
    assert (org.lead_a, "decision_requested") in await outbox_of(pool, view.trial_id)
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "evaluate", evaluation_by(org.part1))
    assert refused.value.kind is RefusalType.PHASE_CONFLICT


async def test_decision_escalates_and_the_escalated_leader_decides(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await deciding_trial(env, trials, org)
    with pytest.raises(TrialRefused):
        await trials.command(
            view.trial_id,
            "decide_outcome",
            OutcomeDecision(actor=as_(org.area_chief), decision="abandon"),
        )
    view = await wait_for(
        env, trials, view.trial_id, lambda v: v.clocks[Step.DECISION].level == 1, step=DAY
    )
    view = await trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(actor=as_(org.area_chief), decision="abandon", comment="Ingen effekt"),
    )
    assert view.phase is Phase.ABANDONED and view.closed


async def test_adapt_starts_iteration_two_under_the_same_id(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)
    view = await deciding_trial(env, trials, org)
    first_run = (await env.client.get_workflow_handle(view.workflow_id).describe()).run_id
    revised = proposal_for(
        org,
        await today(env),
        title="Morgenhuddle, version 2",
        planned_duration=Duration.model_validate("3 weeks"),
    )
    view = await trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(
            actor=as_(org.lead_b),
            decision="adapt",
            comment="Prøv med fast ordstyrer",
            revised_proposal=revised,
        ),
    )
    assert view.iteration == 2 and view.phase is Phase.PROPOSED
    assert view.proposal.title == "Morgenhuddle, version 2"
    assert [i.iteration for i in view.previous_iterations] == [1]
    assert view.previous_iterations[0].outcome is not None
    assert view.approvals == [] and view.evaluations == []

    async def new_run() -> str:
        return (await env.client.get_workflow_handle(view.workflow_id).describe()).run_id

    for _ in range(50):
        if await new_run() != first_run:
            break
        await env.sleep(timedelta(seconds=1))
    assert await new_run() != first_run

    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_a), decision="approve"),
    )
    assert view.phase is Phase.RUNNING and view.iteration == 2
    events = await events_of(pool, view.trial_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [(e["iteration"], e["kind"]) for e in events]
    assert kinds[-5:] == [
        (1, "adapted"),
        (2, "proposed"),
        (2, "approval_given"),
        (2, "approved"),
        (2, "started"),
    ]


async def test_follow_up_after_adoption_closes_unanswered(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool)  # follow_up_after 90 days
    view = await deciding_trial(env, trials, org)
    view = await trials.command(
        view.trial_id, "decide_outcome", OutcomeDecision(actor=as_(org.lead_a), decision="adopt")
    )
    adopted_at = (await event(pool, view.trial_id, "adopted"))["occurred_at"]
    assert view.deadlines.follow_up_at == adopted_at + timedelta(days=90)
    await env.sleep(timedelta(days=89))
    assert "follow_up_requested" not in await kinds_of(pool, view.trial_id)
    await wait_for(env, trials, view.trial_id, lambda v: v.closed, step=DAY, attempts=30)
    handle = env.client.get_workflow_handle(view.workflow_id, result_type=TrialView)
    final = await handle.result()
    assert final.phase is Phase.ADOPTED and final.follow_up is not None
    assert final.follow_up.closed_unanswered
    requested = await event(pool, view.trial_id, "follow_up_requested")
    assert close_to(requested["occurred_at"], adopted_at + timedelta(days=90))
    assert (await kinds_of(pool, view.trial_id))[-2:] == ["follow_up_requested", "follow_up_closed"]
    assert (org.proposer, "follow_up") in await outbox_of(pool, view.trial_id)
