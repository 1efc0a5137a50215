"""What Temporal history holds: no personal data, the same events as PostgreSQL, and survival of
retries and continue-as-new."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.trial_activities import TrialActivities
from schemas.commands import ApprovalDecision, CheckIn, OutcomeDecision
from schemas.duration import Duration
from schemas.trial import Phase, RecordEventInput, RecordEventsInput, TrialEvent, TrialView
from store import read_model
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import (
    as_,
    assert_events_match_history,
    deciding_trial,
    events_of,
    outbox_of,
    run_histories,
    running_trial,
    today,
)
from tests.workflow_cleanup import end_workflows
from trial_client.client import TrialClient
from workflows.trial import TrialWorkflow


def _payload_texts(node: Any) -> list[str]:
    """Decoded text of every payload in a history's JSON form."""
    texts: list[str] = []
    if isinstance(node, dict):
        if "metadata" in node and "data" in node and isinstance(node["data"], str):
            texts.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
        for value in node.values():
            texts.extend(_payload_texts(value))
    elif isinstance(node, list):
        for value in node:
            texts.extend(_payload_texts(value))
    return texts


async def test_no_name_or_email_in_any_history(
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
                "to": day + timedelta(days=30),
            }
        ],
    )
    view = await deciding_trial(env, trials, org)
    revised = proposal_for(org, day, title="Runde to")
    view = await trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(
            actor=as_(org.deputy, org.lead_a), decision="adapt", revised_proposal=revised
        ),
    )
    view = await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_b), decision="reject", comment="Nej tak"),
    )
    histories = await run_histories(env, view.workflow_id)
    texts = "\n".join(
        text for history in histories for text in _payload_texts(json.loads(history.to_json()))
    )
    assert org.proposer in texts and org.deputy in texts  # ids are there: the check can see
    for person in org.people:
        assert person.name not in texts, f"name of {person.id} in history"
        assert person.email not in texts, f"e-mail of {person.id} in history"
        assert person.email.split("@")[0] not in texts


async def test_postgres_events_match_temporal_history(
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
            revised_proposal=proposal_for(org, await today(env)),
        ),
    )
    for _ in range(40):
        if len(await run_histories(env, view.workflow_id)) > 1:
            break
        await env.sleep(timedelta(seconds=1))
    assert len(await run_histories(env, view.workflow_id)) == 2
    count = await assert_events_match_history(env, pool, view.trial_id, view.workflow_id)
    assert count == view.last_seq


class CrashAfterCommit(TrialActivities):
    """Writes the event, then fails its first attempt, as a worker dying before it reports."""

    @activity.defn(name="record_events")
    async def record_events(self, item: RecordEventsInput) -> list[bool]:
        written = await super().record_events(item)
        if activity.info().attempt == 1:
            raise RuntimeError("worker lost after the transaction committed")
        return written


async def test_retried_activity_records_one_event(
    env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    crashing = CrashAfterCommit(pool)
    org = await make_org(pool, FAST_POLICY)
    async with Worker(
        env.client, task_queue=queue, workflows=[TrialWorkflow], activities=crashing.all()
    ):
        trials = TrialClient(env.client, pool, queue)
        view = await running_trial(env, trials, org)
        # nobody serves this queue after the test: end the trial so its timers hold nothing up
        await end_workflows(env, [view.workflow_id], "test finished")
    history = (await run_histories(env, view.workflow_id))[0]
    retried = [
        e
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.attempt >= 2
    ]
    # two recordings, each retried once: the proposal, and the approval's three events at once
    assert len(retried) == 2
    assert await assert_events_match_history(env, pool, view.trial_id, view.workflow_id) == 4
    outbox = await outbox_of(pool, view.trial_id)
    assert len(outbox) == len(set(outbox))


async def test_recording_the_same_event_twice_writes_once(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await trials.propose(as_(org.proposer), proposal_for(org, await today(env)))
    event = TrialEvent(
        trial_id=view.trial_id,
        seq=2,
        iteration=1,
        kind="withdrawn",
        occurred_at=view.updated_at,
        phase=Phase.WITHDRAWN,
        actor_id=org.proposer,
        notifications=[{"recipient_id": org.lead_a, "kind": "withdrawn"}],
    )
    later = view.model_copy(update={"phase": Phase.WITHDRAWN, "last_seq": 2})
    item = RecordEventInput(event=event, view=later)
    assert await read_model.record_event(pool, item) is True
    assert await read_model.record_event(pool, item) is False
    assert [r["seq"] for r in await events_of(pool, view.trial_id)] == [1, 2]
    assert (await outbox_of(pool, view.trial_id)).count((org.lead_a, "withdrawn")) == 1
    gap = RecordEventInput(
        event=event.model_copy(update={"seq": 4}),
        view=later.model_copy(update={"last_seq": 4}),
    )
    with pytest.raises(read_model.OutOfOrderEvent):
        await read_model.record_event(pool, gap)


async def test_continue_as_new_loses_no_update(
    env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    trials = TrialClient(env.client, pool, task_queue, history_event_limit=60)
    org = await make_org(pool, FAST_POLICY)
    view = await running_trial(env, trials, org, duration="10 weeks")
    people = [org.proposer, org.part1, org.part2]

    async def check_in(n: int) -> TrialView:
        return await trials.command(
            view.trial_id,
            "check_in",
            CheckIn(
                actor=as_(people[n % 3]),
                note=f"Statusmelding {n}",
                measures={"overlevering": float(n)},
            ),
            idempotency_key=f"ci-{n}",
        )

    results = await asyncio.gather(*(check_in(n) for n in range(30)))
    assert all(r.phase is Phase.RUNNING for r in results)
    final = await trials.view(view.trial_id)
    assert final.check_ins == 30
    assert len(await run_histories(env, view.workflow_id)) >= 2
    count = await assert_events_match_history(env, pool, view.trial_id, view.workflow_id)
    assert count == 4 + 30
    notes = {
        r["data"]["note"] for r in await events_of(pool, view.trial_id) if r["kind"] == "checked_in"
    }
    assert notes == {f"Statusmelding {n}" for n in range(30)}
    assert final.proposal.planned_duration == Duration.model_validate("10 weeks")
