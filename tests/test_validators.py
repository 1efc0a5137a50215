"""Commands refused by the validators: wrong actor, wrong phase, bad data; nothing is recorded."""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from schemas.commands import ApprovalDecision, CheckIn, Evaluation, Extend, Resume, Revision
from schemas.duration import Duration
from schemas.errors import RefusalType
from schemas.trial import Phase
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import accepted_updates, as_, kinds_of, today
from trial_client.client import TrialClient, TrialRefused


def approve(person: str, on_behalf_of: str | None = None) -> ApprovalDecision:
    return ApprovalDecision(actor=as_(person, on_behalf_of), decision="approve")


async def test_self_approval_refused_before_history(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    for attempt in (approve(org.proposer), approve(org.lead_a, on_behalf_of=org.proposer)):
        with pytest.raises(TrialRefused) as refused:
            await trials.command(view.trial_id, "decide_approval", attempt)
        assert refused.value.kind is RefusalType.FORBIDDEN
        assert "no self-approval" in refused.value.message
    assert await accepted_updates(env, view.workflow_id) == 1  # only `ready`, at proposal
    assert await kinds_of(pool, view.trial_id) == ["proposed"]
    assert (await trials.view(view.trial_id)).approvals == []


async def test_approval_by_non_leader_refused(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    for person in (org.part1, org.outsider, org.other_lead, org.area_chief, org.director):
        with pytest.raises(TrialRefused) as refused:
            await trials.command(view.trial_id, "decide_approval", approve(person))
        assert refused.value.kind is RefusalType.FORBIDDEN
        assert "only leaders of the trial's unit" in refused.value.message
        assert refused.value.field == "actor"
    assert await accepted_updates(env, view.workflow_id) == 1  # only `ready`, at proposal
    assert await kinds_of(pool, view.trial_id) == ["proposed"]


async def test_commands_in_the_wrong_phase_refused(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    evaluation = Evaluation(
        actor=as_(org.proposer), worked="yes", effect="x", effort=1, value=1, prediction_held="yes"
    )
    attempts = [
        ("check_in", CheckIn(actor=as_(org.proposer), note="for tidligt")),
        ("evaluate", evaluation),
        ("resume", Resume(actor=as_(org.proposer))),
        ("extend", Extend(actor=as_(org.proposer), by=Duration.model_validate("1 weeks"))),
        ("revise", Revision(actor=as_(org.proposer), proposal=view.proposal)),
    ]
    for name, command in attempts:
        with pytest.raises(TrialRefused) as refused:
            await trials.command(view.trial_id, name, command)
        assert refused.value.kind is RefusalType.PHASE_CONFLICT, name
        assert "that is proposed" in refused.value.message
    assert await accepted_updates(env, view.workflow_id) == 1  # only `ready`, at proposal


async def test_reject_ends_the_trial(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_b), decision="reject", comment="Ikke nu"),
    )
    assert view.phase is Phase.REJECTED and view.closed
    assert await kinds_of(pool, view.trial_id) == ["proposed", "rejected"]
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert refused.value.kind is RefusalType.PHASE_CONFLICT
    row = await pool.fetchrow("SELECT phase FROM trials WHERE id = $1", view.trial_id)
    assert row is not None and row["phase"] == "rejected"


async def test_request_changes_then_revise_resets_approvals(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, {**FAST_POLICY, "required_approvals": 2})
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert len(view.approvals) == 1
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(
            actor=as_(org.lead_b), decision="request_changes", comment="Tilføj en måling"
        ),
    )
    assert view.phase is Phase.CHANGES_REQUESTED and view.approvals == []
    assert view.change_request is not None and view.change_request.comment == "Tilføj en måling"

    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert refused.value.kind is RefusalType.PHASE_CONFLICT

    revised = view.proposal.model_copy(update={"title": "Morgenhuddle med to målinger"})
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id, "revise", Revision(actor=as_(org.part1), proposal=revised)
        )
    assert refused.value.kind is RefusalType.FORBIDDEN

    too_long = revised.model_copy(update={"planned_duration": Duration.model_validate("13 weeks")})
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id, "revise", Revision(actor=as_(org.proposer), proposal=too_long)
        )
    assert refused.value.kind is RefusalType.INVALID
    assert refused.value.field == "proposal.planned_duration"
    assert "maximum trial length of 12 weeks" in refused.value.message

    view = await trials.command(
        view.trial_id, "revise", Revision(actor=as_(org.proposer), proposal=revised)
    )
    assert view.phase is Phase.PROPOSED and view.approvals == []
    assert view.proposal.title == "Morgenhuddle med to målinger"
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_b))
    assert view.phase is Phase.RUNNING
    assert await kinds_of(pool, view.trial_id) == [
        "proposed",
        "approval_given",
        "changes_requested",
        "revised",
        "approval_given",
        "approval_given",
        "approved",
        "started",
    ]


async def test_quorum_of_two(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, {**FAST_POLICY, "required_approvals": 2})
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    assert view.required_approvals == 2
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert view.phase is Phase.PROPOSED and len(view.approvals) == 1
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert refused.value.kind is RefusalType.PHASE_CONFLICT
    assert "already approved" in refused.value.message
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_b))
    assert view.phase is Phase.RUNNING
    assert [a.person_id for a in view.approvals] == [org.lead_a, org.lead_b]


async def test_withdraw_by_the_proposer_only(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    start = await today(env)
    later = start.replace(year=start.year + 1)
    view = await trials.propose(as_(org.proposer), proposal_for(org, later))
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert view.phase is Phase.SCHEDULED
    assert view.deadlines.starts_at is not None
    withdraw = {"actor": as_(org.lead_a), "reason": "x"}
    from schemas.commands import Withdraw

    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "withdraw", Withdraw.model_validate(withdraw))
    assert refused.value.kind is RefusalType.FORBIDDEN
    view = await trials.command(
        view.trial_id, "withdraw", Withdraw(actor=as_(org.proposer), reason="Nyt skema")
    )
    assert view.phase is Phase.WITHDRAWN and view.closed
    assert await kinds_of(pool, view.trial_id) == [
        "proposed",
        "approval_given",
        "approved",
        "withdrawn",
    ]


async def test_withdraw_refused_once_running(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    from schemas.commands import Withdraw

    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    assert view.phase is Phase.RUNNING
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "withdraw", Withdraw(actor=as_(org.proposer)))
    assert refused.value.kind is RefusalType.PHASE_CONFLICT


async def test_check_in_with_unknown_measure_refused(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await trials.command(view.trial_id, "decide_approval", approve(org.lead_a))
    with pytest.raises(TrialRefused) as refused:
        await trials.command(
            view.trial_id,
            "check_in",
            CheckIn(actor=as_(org.part1), note="x", measures={"ventetid": 3}),
        )
    assert refused.value.kind is RefusalType.INVALID and refused.value.field == "measures"
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "check_in", CheckIn(actor=as_(org.outsider), note="x"))
    assert refused.value.kind is RefusalType.FORBIDDEN


async def test_substitute_approves_in_their_period_only(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    day = await today(env)
    org = await make_org(
        pool,
        FAST_POLICY,
        substitutes=[
            {
                "leader": "lead_a",
                "substitute": "deputy",
                "from": day,
                "to": day.replace(year=day.year + 1),
            },
            {
                "leader": "lead_b",
                "substitute": "part1",
                "from": day.replace(year=day.year - 2),
                "to": day.replace(year=day.year - 1),
            },
        ],
    )
    view = await trials.propose(as_(org.proposer), proposal_for(org, day))
    with pytest.raises(TrialRefused) as refused:
        await trials.command(view.trial_id, "decide_approval", approve(org.part1, org.lead_b))
    assert refused.value.kind is RefusalType.FORBIDDEN
    view = await trials.command(view.trial_id, "decide_approval", approve(org.deputy, org.lead_a))
    assert view.phase is Phase.RUNNING
    assert view.approvals[0].person_id == org.deputy
    assert view.approvals[0].on_behalf_of == org.lead_a
    row = await pool.fetchrow(
        "SELECT actor_id, on_behalf_of FROM trial_events WHERE trial_id = $1 AND seq = 2",
        view.trial_id,
    )
    assert row is not None and (row["actor_id"], row["on_behalf_of"]) == (org.deputy, org.lead_a)


async def test_proposal_checked_against_directory_and_policy(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    other = await make_org(pool, FAST_POLICY)
    day = await today(env)
    cases = [
        (as_(org.outsider), proposal_for(org, day), "proposal.unit_id"),
        (
            as_(org.proposer),
            proposal_for(org, day, participants=[other.part1]),
            "proposal.participants[0]",
        ),
        (
            as_(org.proposer),
            proposal_for(org, day, planned_duration=Duration.model_validate("100 days")),
            "proposal.planned_duration",
        ),
    ]
    for actor, proposal, field in cases:
        with pytest.raises(TrialRefused) as refused:
            await trials.propose(actor, proposal)
        assert refused.value.field == field
    count = await pool.fetchval("SELECT count(*) FROM trials WHERE organisation_id = $1", org.id)
    assert count == 0
