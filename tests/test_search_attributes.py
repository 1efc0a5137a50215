"""Trials carry phase, organisation, unit and escalation level as search attributes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.factory import FAST_POLICY, make_org
from tests.helpers import running_trial
from trial_client.client import TrialClient
from workflows.search_attributes import (
    TRIAL_ESCALATION_LEVEL,
    TRIAL_ORGANISATION,
    TRIAL_PHASE,
    TRIAL_UNIT,
)


async def test_search_attributes_follow_the_trial(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool, server_kind: str
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await running_trial(env, trials, org, duration="10 weeks")
    attributes = await env.client.get_workflow_handle(view.workflow_id).describe()
    found = attributes.typed_search_attributes
    assert found.get(TRIAL_PHASE) == "running"
    assert found.get(TRIAL_ORGANISATION) == org.id
    assert found.get(TRIAL_UNIT) == org.team
    assert found.get(TRIAL_ESCALATION_LEVEL) == 0
    if server_kind != "dev":
        return  # the time-skipping server has no visibility store to list from
    query = f"TrialOrganisation = '{org.id}' AND TrialPhase = 'running'"
    for _ in range(50):  # visibility is eventually consistent
        ids = [w.id async for w in env.client.list_workflows(query)]
        if ids:
            break
        await asyncio.sleep(0.2)
    assert ids == [view.workflow_id]


@pytest.mark.time_skipping_only
async def test_escalation_level_is_searchable(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    from datetime import timedelta

    from schemas.trial import Step
    from tests.factory import proposal_for
    from tests.helpers import as_, today, wait_for

    org = await make_org(pool)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    view = await wait_for(
        env,
        trials,
        view.trial_id,
        lambda v: v.clocks[Step.APPROVAL].level == 2,
        step=timedelta(days=1),
        attempts=40,
    )
    found = (
        await env.client.get_workflow_handle(view.workflow_id).describe()
    ).typed_search_attributes
    assert found.get(TRIAL_ESCALATION_LEVEL) == 2 and found.get(TRIAL_PHASE) == "proposed"
