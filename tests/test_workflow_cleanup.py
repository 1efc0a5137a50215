"""end_workflows leaves the shared time-skipping server able to skip time, whatever the workflow
had in flight when it was ended (see tests/workflow_cleanup.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflow_cleanup import end_workflows

pytestmark = pytest.mark.time_skipping_only


class Gate:
    """An activity that reports when it has started and finishes only when let through."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @activity.defn(name="held")
    async def held(self) -> None:
        self.started.set()
        await self.release.wait()


@workflow.defn(name="CleanupProbe", sandboxed=False)
class CleanupProbe:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            "held", start_to_close_timeout=timedelta(minutes=5), result_type=type(None)
        )
        await workflow.sleep(timedelta(days=30))


@pytest.fixture
async def gate(env: WorkflowEnvironment) -> AsyncIterator[tuple[Gate, str]]:
    gate, queue = Gate(), f"cleanup-{uuid.uuid4().hex[:8]}"
    worker = Worker(env.client, task_queue=queue, workflows=[CleanupProbe], activities=[gate.held])
    async with worker:
        yield gate, queue
        gate.release.set()


async def time_skips(env: WorkflowEnvironment) -> bool:
    """A virtual day passes within a few real seconds (it cannot while a lock is held)."""
    before = await env.get_current_time()
    try:
        await asyncio.wait_for(env.sleep(timedelta(days=1)), timeout=10)
    except TimeoutError:
        return False
    return await env.get_current_time() - before >= timedelta(days=1)


async def start(env: WorkflowEnvironment, queue: str) -> str:
    workflow_id = f"cleanup-probe-{uuid.uuid4().hex[:8]}"
    await env.client.start_workflow(CleanupProbe.run, id=workflow_id, task_queue=queue)
    return workflow_id


async def event_types(env: WorkflowEnvironment, workflow_id: str) -> list[EventType.ValueType]:
    handle = env.client.get_workflow_handle(workflow_id)
    return [event.event_type async for event in handle.fetch_history_events()]


async def test_ending_a_workflow_mid_activity_leaves_time_skipping(
    env: WorkflowEnvironment, gate: tuple[Gate, str]
) -> None:
    probe, queue = gate
    workflow_id = await start(env, queue)
    await asyncio.wait_for(probe.started.wait(), timeout=10)
    await end_workflows(env, [workflow_id], "test done", settle=0)  # no waiting: mid-activity
    events = await event_types(env, workflow_id)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in events  # started, not finished
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in events
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    probe.release.set()  # the worker's late answer is refused: the workflow is gone
    assert await time_skips(env)


async def test_ending_a_workflow_whose_task_nobody_polls_leaves_time_skipping(
    env: WorkflowEnvironment,
) -> None:
    workflow_id = await start(env, f"nobody-polls-{uuid.uuid4().hex[:8]}")
    await end_workflows(env, [workflow_id], "test done", settle=0)
    events = await event_types(env, workflow_id)
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in events
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    assert await time_skips(env)


async def test_a_workflow_is_let_finish_its_activity_before_it_is_ended(
    env: WorkflowEnvironment, gate: tuple[Gate, str]
) -> None:
    probe, queue = gate
    workflow_id = await start(env, queue)
    await asyncio.wait_for(probe.started.wait(), timeout=10)
    ending = asyncio.create_task(end_workflows(env, [workflow_id], "test done", settle=10))
    await asyncio.sleep(0.5)
    assert not ending.done()  # waits while the activity runs
    probe.release.set()
    await asyncio.wait_for(ending, timeout=10)
    events = await event_types(env, workflow_id)
    completed = events.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    assert EventType.EVENT_TYPE_TIMER_STARTED in events[completed:]  # idle on its timer
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    assert await time_skips(env)


async def test_a_workflow_that_already_closed_is_left_alone(env: WorkflowEnvironment) -> None:
    workflow_id = await start(env, f"nobody-polls-{uuid.uuid4().hex[:8]}")
    await end_workflows(env, [workflow_id], "first", settle=0)
    await end_workflows(env, [workflow_id, f"never-started-{uuid.uuid4().hex[:8]}"], "again")
    events = await event_types(env, workflow_id)
    assert events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED) == 1
    assert await time_skips(env)
