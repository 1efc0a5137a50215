"""Worker memory with thousands of open trials waiting on timers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from bench.stack import Stack, rss_mb
from schemas.commands import Actor as A
from schemas.duration import Duration
from tests.factory import proposal_for
from workflows.calendar import BusinessCalendar


async def measure(stack: Stack, open_trials: int, concurrency: int = 40) -> dict[str, float]:
    queue = f"mem-{uuid.uuid4().hex[:6]}"
    worker = await stack.start_worker(queue)
    trials = stack.trials(queue)
    org = stack.org
    day = BusinessCalendar.today(datetime.now().astimezone())
    gate = asyncio.Semaphore(concurrency)
    idle = rss_mb(worker.pid)

    async def open_one(n: int) -> None:
        async with gate:
            proposal = proposal_for(
                org,
                day,
                title=f"Åben prøvehandling {n}",
                planned_duration=Duration.model_validate("12 weeks"),
            )
            await trials.propose(A(person_id=org.proposer), proposal)  # waits on its timers

    try:
        await asyncio.gather(*(open_one(n) for n in range(open_trials)))
        await asyncio.sleep(5)  # let the worker settle: every trial now waits on its timers
        loaded = rss_mb(worker.pid)
        running = await stack.pool.fetchval(
            "SELECT count(*) FROM trials WHERE phase = 'proposed' AND title LIKE 'Åben%'"
        )
    finally:
        worker.stop()
    return {
        "open_trials": int(running),
        "worker_rss_idle_mb": round(idle, 1),
        "worker_rss_mb": round(loaded, 1),
    }
