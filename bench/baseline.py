"""A bare Temporal workflow that issues what one trial lifecycle issues, and nothing else.

Same number of activities (10 recordings of the 13 events, 3 local look-ups), updates (8) and
fired timers (2) as the happy path proposal -> approval -> check-in -> end -> 3 evaluations ->
adopt -> follow-up, with activities that do no work: the ceiling our workflow is measured against.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

STEPS = {  # update name -> activities it runs before answering
    "approve": 1,  # approval_given, approved and started, recorded at once
    "check_in": 1,
    "evaluate": 1,
    "decide": 1,
    "answer": 1,
}


@activity.defn
async def noop(seq: int) -> int:
    return seq


@workflow.defn
class BaselineLifecycle:
    def __init__(self) -> None:
        self.phase = "proposed"
        self.seq = 0
        self.evaluations = 0
        self.ready = False

    async def _act(self, count: int = 1) -> None:
        for _ in range(count):
            self.seq += 1
            await workflow.execute_activity(
                noop, self.seq, start_to_close_timeout=timedelta(seconds=30)
            )

    async def _look_up(self) -> None:
        await workflow.execute_local_activity(noop, 0, start_to_close_timeout=timedelta(seconds=10))

    @workflow.run
    async def run(self, period_seconds: float) -> int:
        await self._look_up()
        await self._look_up()
        await self._act()  # proposed
        self.ready = True
        await workflow.wait_condition(lambda: self.phase == "running")
        await workflow.sleep(timedelta(seconds=period_seconds))
        self.phase = "evaluating"
        await self._act()  # ended
        await workflow.wait_condition(lambda: self.phase == "adopted")
        await workflow.sleep(timedelta(seconds=period_seconds))
        self.phase = "follow_up"
        await self._act()  # follow_up_requested
        await workflow.wait_condition(lambda: self.phase == "closed")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.seq

    @workflow.query
    def current(self) -> str:
        return self.phase

    @workflow.update
    async def wait_ready(self) -> str:
        await workflow.wait_condition(lambda: self.ready)
        return self.phase

    @workflow.update
    async def step(self, name: str) -> str:
        await self._act(STEPS[name])
        if name == "approve":
            self.phase = "running"
        elif name == "evaluate":
            self.evaluations += 1
            if self.evaluations == 3:  # evaluation_closed is recorded with the third evaluation
                await self._look_up()
                self.phase = "deciding"
        elif name == "decide":
            self.phase = "adopted"
        elif name == "answer":
            self.phase = "closed"
        return self.phase

    @step.validator
    def _known(self, name: str) -> None:
        if name not in STEPS:
            raise ValueError(f"unknown step {name!r}")
