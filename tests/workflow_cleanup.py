"""Ending the workflows a test leaves open without freezing the shared time-skipping server.

The Java time-skipping test server holds its clock still while a workflow task or an activity is
outstanding: each one takes a time-skipping lock, released when the task completes. A termination
does not release them (sdk-java#1138): the worker's late answer is refused with "Completed
workflow", the lock stays, and from then on the server's clock only moves in real time, so every
later test that sleeps through days of virtual time times out. That is what turned CI red after a
cleanup terminated an adopted trial while its last activity was still running.

`end_workflows` therefore lets each workflow finish what it has in flight before terminating it,
and, on the time-skipping server, hands back the lock of anything that was still outstanding when
the termination landed (a timer can fire in the gap between the two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import UnlockTimeSkippingRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

WORKFLOW_TASK_OPENED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    # a failed or timed-out task is scheduled again at once (not always written to history)
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
WORKFLOW_TASK_CLOSED = {EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


async def in_flight(handle: WorkflowHandle[object, object]) -> tuple[bool, int]:
    """Whether the run is still open, and how many of its workflow tasks (0 or 1) and
    activities are unfinished."""
    description = await handle.describe()
    workflow_task_open = False
    async for event in handle.fetch_history_events():
        if event.event_type in WORKFLOW_TASK_OPENED:
            workflow_task_open = True
        elif event.event_type in WORKFLOW_TASK_CLOSED:
            workflow_task_open = False
    outstanding = int(workflow_task_open) + len(description.raw_description.pending_activities)
    return description.status is WorkflowExecutionStatus.RUNNING, outstanding


async def until_idle(handle: WorkflowHandle[object, object], within: float) -> bool:
    """Wait in real time (at most `within` seconds) until nothing of the workflow is in flight;
    False when it has closed meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        running, outstanding = await in_flight(handle)
        if not running:
            return False
        if not outstanding or loop.time() >= deadline:
            return True
        await asyncio.sleep(0.02)


async def end_workflows(
    env: WorkflowEnvironment, workflow_ids: Iterable[str], reason: str, *, settle: float = 10.0
) -> None:
    """Terminate each workflow that is still open, once idle (waiting at most `settle` seconds)."""
    for workflow_id in workflow_ids:
        handle: WorkflowHandle[object, object] = env.client.get_workflow_handle(workflow_id)
        try:
            if not await until_idle(handle, settle):
                continue
            await handle.terminate(reason)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:  # closed by itself, or never started
                continue
            raise
        if env.supports_time_skipping_v1:
            _, outstanding = await in_flight(handle)
            for _ in range(outstanding):
                await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
