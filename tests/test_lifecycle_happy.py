"""The happy path, on both servers: proposal to adoption and its follow-up."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from temporalio.testing import WorkflowEnvironment

from schemas.commands import (
    ApprovalDecision,
    CheckIn,
    FollowUpAnswer,
    OutcomeDecision,
)
from schemas.duration import Duration
from schemas.trial import Phase, TrialView
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import (
    as_,
    assert_events_match_history,
    evaluation_by,
    events_of,
    kinds_of,
    outbox_of,
    today,
    wait_for,
)
from trial_client.client import TrialClient


async def test_happy_path_to_adoption_and_follow_up(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    proposal = proposal_for(
        org, await today(env), planned_duration=Duration.model_validate("5 seconds")
    )
    view = await trials.propose(as_(org.proposer), proposal)
    assert view.phase is Phase.PROPOSED
    assert {e.person_id for e in view.eligible_approvers} == {org.lead_a, org.lead_b}
    row = await pool.fetchrow("SELECT phase, last_seq FROM trials WHERE id = $1", view.trial_id)
    assert row is not None and row["phase"] == "proposed" and row["last_seq"] == 1

    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_a), decision="approve", comment="God idé"),
    )
    assert view.phase is Phase.RUNNING
    assert view.deadlines.ends_at is not None and view.started_at is not None
    assert view.deadlines.ends_at - view.started_at == timedelta(seconds=5)

    view = await trials.command(
        view.trial_id,
        "check_in",
        CheckIn(actor=as_(org.part1), note="Første uge gik godt", measures={"overlevering": 17}),
    )
    assert view.check_ins == 1 and view.last_check_in is not None

    view = await wait_for(env, trials, view.trial_id, lambda v: v.phase is Phase.EVALUATING)
    for person in (org.proposer, org.part1):
        view = await trials.command(view.trial_id, "evaluate", evaluation_by(person))
        assert view.phase is Phase.EVALUATING
    view = await trials.command(view.trial_id, "evaluate", evaluation_by(org.part2))
    assert view.phase is Phase.DECIDING

    view = await trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(actor=as_(org.lead_b), decision="adopt", comment="Vi fortsætter"),
    )
    assert view.phase is Phase.ADOPTED and view.follow_up is not None

    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.follow_up is not None and v.follow_up.requested_at is not None,
    )
    view = await trials.command(
        view.trial_id,
        "answer_follow_up",
        FollowUpAnswer(actor=as_(org.proposer), still_in_use=True),
    )
    assert view.closed and view.follow_up is not None and view.follow_up.still_in_use

    handle = env.client.get_workflow_handle(view.workflow_id, result_type=TrialView)
    final = await handle.result()
    assert final.phase is Phase.ADOPTED

    assert await kinds_of(pool, view.trial_id) == [
        "proposed",
        "approval_given",
        "approved",
        "started",
        "checked_in",
        "ended",
        "evaluated",
        "evaluated",
        "evaluated",
        "evaluation_closed",
        "adopted",
        "follow_up_requested",
        "follow_up_answered",
    ]
    events = await events_of(pool, view.trial_id)
    assert await assert_events_match_history(env, pool, view.trial_id, view.workflow_id) == 13
    row = await pool.fetchrow("SELECT phase, last_seq FROM trials WHERE id = $1", view.trial_id)
    assert row is not None and row["phase"] == "adopted" and row["last_seq"] == len(events)
    measures = await pool.fetch(
        "SELECT measure, value FROM trial_measures WHERE trial_id = $1", view.trial_id
    )
    assert [(m["measure"], m["value"]) for m in measures] == [("overlevering", 17.0)]

    outbox = await outbox_of(pool, view.trial_id)
    assert (org.lead_a, "approval_requested") in outbox
    assert (org.lead_b, "approval_requested") in outbox
    assert (org.part1, "trial_starts") in outbox
    assert (org.part2, "evaluation_requested") in outbox
    assert (org.lead_a, "decision_requested") in outbox
    assert (org.proposer, "follow_up") in outbox
    assert (org.proposer, "approval_requested") not in outbox
