"""Full lifecycles per second with one worker on the dev server, ours beside the bare baseline."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from bench.baseline import BaselineLifecycle
from bench.stack import Stack
from schemas.commands import Actor as A
from schemas.commands import (
    ApprovalDecision,
    CheckIn,
    Evaluation,
    FollowUpAnswer,
    OutcomeDecision,
)
from schemas.duration import Duration
from schemas.trial import Phase
from tests.factory import proposal_for
from trial_client.client import TrialClient
from workflows.calendar import BusinessCalendar

PERIOD_SECONDS = 3  # long enough that a check-in right after approval is never too late
POLL = 0.1


async def _wait(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():  # noqa: ASYNC110 - the state lives on the server: we poll it
        await asyncio.sleep(POLL)


async def our_lifecycle(stack: Stack, trials: TrialClient) -> None:
    org = stack.org
    day = BusinessCalendar.today(datetime.now().astimezone())
    proposal = proposal_for(
        org, day, planned_duration=Duration.model_validate(f"{PERIOD_SECONDS} seconds")
    )
    view = await trials.propose(A(person_id=org.proposer), proposal)
    tid = view.trial_id
    await trials.command(
        tid, "decide_approval", ApprovalDecision(actor=A(person_id=org.lead_a), decision="approve")
    )
    await trials.command(tid, "check_in", CheckIn(actor=A(person_id=org.part1), note="ok"))

    async def phase_is(phase: Phase) -> bool:
        return (await trials.view(tid)).phase is phase

    await _wait(lambda: phase_is(Phase.EVALUATING))
    for person in (org.proposer, org.part1, org.part2):
        await trials.command(
            tid,
            "evaluate",
            Evaluation(
                actor=A(person_id=person),
                worked="yes",
                effect="godt",
                effort=2,
                value=4,
                prediction_held="yes",
            ),
        )
    await trials.command(
        tid, "decide_outcome", OutcomeDecision(actor=A(person_id=org.lead_b), decision="adopt")
    )

    async def asked() -> bool:
        found = await trials.view(tid)
        return found.follow_up is not None and found.follow_up.requested_at is not None

    await _wait(asked)
    await trials.command(
        tid, "answer_follow_up", FollowUpAnswer(actor=A(person_id=org.proposer), still_in_use=True)
    )
    await stack.client.get_workflow_handle(view.workflow_id).result()


async def baseline_lifecycle(stack: Stack, task_queue: str) -> None:
    handle = await stack.client.start_workflow(
        BaselineLifecycle.run,
        float(PERIOD_SECONDS),
        id=f"baseline-{uuid.uuid4()}",
        task_queue=task_queue,
    )
    await handle.execute_update(BaselineLifecycle.wait_ready)
    await handle.execute_update(BaselineLifecycle.step, "approve")
    await handle.execute_update(BaselineLifecycle.step, "check_in")

    async def phase_is(phase: str) -> bool:
        return await handle.query(BaselineLifecycle.current) == phase

    await _wait(lambda: phase_is("evaluating"))
    for _ in range(3):
        await handle.execute_update(BaselineLifecycle.step, "evaluate")
    await handle.execute_update(BaselineLifecycle.step, "decide")
    await _wait(lambda: phase_is("follow_up"))
    await handle.execute_update(BaselineLifecycle.step, "answer")
    await handle.result()


async def rate(run_one: Callable[[], Awaitable[None]], total: int, concurrency: int) -> float:
    """Lifecycles per second for `total` lifecycles, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await run_one()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return total / (time.perf_counter() - started)


async def measure(stack: Stack, total: int, concurrency: int, rounds: int) -> dict[str, float]:
    ours_queue, base_queue = f"bench-{uuid.uuid4().hex[:6]}", f"base-{uuid.uuid4().hex[:6]}"
    worker = await stack.start_worker(ours_queue)
    baseline = await stack.start_baseline_worker(base_queue)
    trials = stack.trials(ours_queue)
    try:
        await rate(lambda: our_lifecycle(stack, trials), 2, 2)  # warm-up
        await rate(lambda: baseline_lifecycle(stack, base_queue), 2, 2)
        ours: list[float] = []
        base: list[float] = []
        for _ in range(rounds):  # interleaved, so drift hits both alike
            base.append(
                await rate(lambda: baseline_lifecycle(stack, base_queue), total, concurrency)
            )
            ours.append(await rate(lambda: our_lifecycle(stack, trials), total, concurrency))
    finally:
        worker.stop()
        baseline.terminate()
        baseline.wait(timeout=20)
    best_ours, best_base = max(ours), max(base)
    return {
        "lifecycles": total,
        "concurrency": concurrency,
        "ours_per_second": round(best_ours, 2),
        "baseline_per_second": round(best_base, 2),
        "ratio": round(best_ours / best_base, 3),
    }
