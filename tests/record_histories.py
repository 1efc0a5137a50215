"""Records histories of the trial workflow for the replay tests (`make record-histories`).

Run explicitly (pytest collects it only when named): each scenario drives a real trial on the
time-skipping server and writes every run's history to tests/histories/<label>/, where label is
PROVE_HISTORY_LABEL (default: the package version). Commit the files with the release.
"""

from __future__ import annotations

import os
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from schemas.commands import (
    Abort,
    ApprovalDecision,
    CheckIn,
    Extend,
    FollowUpAnswer,
    OutcomeDecision,
    Pause,
    Resume,
    Revision,
)
from schemas.duration import Duration
from schemas.trial import Phase, Step
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import as_, deciding_trial, evaluation_by, run_histories, today, wait_for
from trial_client.client import TrialClient

pytestmark = pytest.mark.time_skipping_only

LABEL = os.environ.get("PROVE_HISTORY_LABEL", f"v{version('provehandling')}")
FOLDER = Path(__file__).parent / "histories" / LABEL


async def _save(env: WorkflowEnvironment, scenario: str, workflow_id: str) -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for number, history in enumerate(await run_histories(env, workflow_id), start=1):
        (FOLDER / f"{scenario}-run{number}.json").write_text(history.to_json(), encoding="utf-8")


async def test_record_adoption_with_follow_up(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await deciding_trial(env, trials, org)
    view = await trials.command(
        view.trial_id, "decide_outcome", OutcomeDecision(actor=as_(org.lead_a), decision="adopt")
    )
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.follow_up is not None and bool(v.follow_up.requested_at),
    )
    await trials.command(
        view.trial_id,
        "answer_follow_up",
        FollowUpAnswer(actor=as_(org.proposer), still_in_use=True),
    )
    await _save(env, "adoption-follow-up", view.workflow_id)


async def test_record_escalation_and_changes(
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
            }
        ],
    )
    view = await trials.propose(as_(org.proposer), proposal_for(org, day))
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.clocks[Step.APPROVAL].level == 2,
        step=timedelta(days=1),
        attempts=40,
    )
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.director), decision="request_changes", comment="Mål mere"),
    )
    view = await trials.command(
        view.trial_id, "revise", Revision(actor=as_(org.proposer), proposal=view.proposal)
    )
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_b), decision="approve"),
    )
    assert view.phase is Phase.RUNNING
    view = await trials.command(view.trial_id, "check_in", CheckIn(actor=as_(org.part1), note="ok"))
    view = await trials.command(view.trial_id, "pause", Pause(actor=as_(org.proposer)))
    await env.sleep(timedelta(days=3))
    view = await trials.command(view.trial_id, "resume", Resume(actor=as_(org.proposer)))
    view = await trials.command(
        view.trial_id,
        "extend",
        Extend(actor=as_(org.lead_a), by=Duration.model_validate("1 weeks")),
    )
    view = await wait_for(
        env, trials, view.trial_id, lambda v: v.stalled, step=timedelta(days=1), attempts=30
    )
    view = await trials.command(view.trial_id, "abort", Abort(actor=as_(org.lead_a), reason="Stop"))
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.phase is Phase.DECIDING,
        step=timedelta(days=1),
        attempts=30,
    )
    view = await trials.command(
        view.trial_id, "decide_outcome", OutcomeDecision(actor=as_(org.lead_a), decision="abandon")
    )
    await _save(env, "escalation-changes-abort", view.workflow_id)


async def test_record_adapt_to_iteration_two(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await deciding_trial(env, trials, org)
    view = await trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(
            actor=as_(org.lead_a),
            decision="adapt",
            revised_proposal=proposal_for(org, await today(env), title="Runde to"),
        ),
    )
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_b), decision="approve"),
    )
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.phase is Phase.EVALUATING,
        step=timedelta(days=1),
        attempts=30,
    )
    for person in (org.proposer, org.part1, org.part2):
        view = await trials.command(view.trial_id, "evaluate", evaluation_by(person))
    view = await trials.command(
        view.trial_id, "decide_outcome", OutcomeDecision(actor=as_(org.lead_b), decision="abandon")
    )
    assert view.iteration == 2
    await _save(env, "adapt-iteration-two", view.workflow_id)
