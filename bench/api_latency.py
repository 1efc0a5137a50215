"""Round trip of an approval through the API: request to new trial view, p50 and p95."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime

import httpx

from bench.api_process import BENCH_SECRET, api_process
from bench.stack import Stack
from tests.factory import proposal_for
from workers.settings import Settings
from workflows.calendar import BusinessCalendar


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(stack: Stack, approvals: int) -> dict[str, float]:
    from api.auth import create_token

    queue = f"api-{uuid.uuid4().hex[:6]}"
    worker = await stack.start_worker(queue)
    settings = Settings(jwt_secret=BENCH_SECRET)
    org = stack.org
    employee = {"Authorization": f"Bearer {create_token(settings, org.proposer, org.id)}"}
    leader = {"Authorization": f"Bearer {create_token(settings, org.lead_a, org.id)}"}
    day = BusinessCalendar.today(datetime.now().astimezone())
    body = proposal_for(org, day).model_dump(mode="json")
    samples: list[float] = []
    try:
        async with (
            api_process(stack.database_url, stack.server.address, queue) as base,
            httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as http,
        ):
            for n in range(approvals + 5):  # the first five warm up
                created = await http.post("/trials", json=body, headers=employee)
                assert created.status_code == 201, created.text
                trial_id = created.json()["trial_id"]
                started = time.perf_counter()
                answer = await http.post(
                    f"/trials/{trial_id}/approvals", json={"decision": "approve"}, headers=leader
                )
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200 and answer.json()["phase"] == "running"
                if n >= 5:
                    samples.append(elapsed)
    finally:
        worker.stop()
    return {
        "approvals": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
    }
