"""Many trials at once, through the HTTP API, on the dev server: nothing lost, nothing doubled.

PROVE_LOAD_TRIALS (default 1,000) trials each go through the whole lifecycle concurrently; then,
for every trial, the read model and the Temporal query agree on phase and event count, the events
are contiguous, and the outbox holds exactly the notifications the history asked for.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.auth import create_token
from schemas.trial import Phase
from tests.api_fixtures import api_settings, serving
from tests.factory import make_org, proposal_for
from tests.helpers import recorded_inputs
from tests.reliability.processes import DevServer, WorkerProcess, wait_polling
from trial_client.client import TrialClient
from workflows.calendar import BusinessCalendar

TRIALS = int(os.environ.get("PROVE_LOAD_TRIALS", "1000"))
CONCURRENCY = 100
# Long enough that most check-ins land inside the trial period even when the dev server is
# saturated (approvals then take seconds); a check-in that arrives after the period ended must be
# refused, and the test checks that the refusal was right.
TRIAL_PERIOD = "20 seconds"
LOAD_POLICY = {
    "approval_sla": "2 hours",
    "reminder_after": "1 hours",
    "stall_after": "2 hours",
    "evaluation_sla": "2 hours",
    "decision_sla": "2 hours",
    "follow_up_after": "3 seconds",
}


class _Env:
    """Just enough of WorkflowEnvironment for the history helpers."""

    def __init__(self, client: object) -> None:
        self.client = client


@pytest.mark.timeout(1800)  # 1,000 lifecycles take minutes on a two-core machine
async def test_many_concurrent_lifecycles_through_the_api(
    dev_server: DevServer,
    pool: asyncpg.Pool,
    task_queue_name: str,
    worker_processes: Callable[..., WorkerProcess],
) -> None:
    client = await dev_server.client()
    for _ in range(2):
        await wait_polling(client, worker_processes())
    org = await make_org(pool, LOAD_POLICY)
    settings = api_settings(task_queue_name)
    app = create_app(settings, temporal_client=client, pool=pool)
    token = {
        who: {"Authorization": f"Bearer {create_token(settings, who, org.id)}"}
        for who in (org.proposer, org.part1, org.part2, org.lead_a, org.lead_b)
    }
    day = BusinessCalendar.today(datetime.now().astimezone())
    gate = asyncio.Semaphore(CONCURRENCY)
    checked_in: list[str] = []

    async def lifecycle(http: httpx.AsyncClient, n: int) -> str:
        async with gate:
            body = proposal_for(org, day, title=f"Belastning {n}").model_dump(mode="json")
            body["planned_duration"] = TRIAL_PERIOD
            created = await http.post("/trials", json=body, headers=token[org.proposer])
            assert created.status_code == 201, created.text
            tid = created.json()["trial_id"]

            async def post(path: str, who: str, json: object, phase: str | None = None) -> None:
                answer = await http.post(f"/trials/{tid}/{path}", json=json, headers=token[who])
                assert answer.status_code == 200, (path, answer.text)
                if phase:
                    assert answer.json()["phase"] == phase, (path, answer.json()["phase"])

            async def until(check: Callable[[dict[str, object]], bool]) -> None:
                for _ in range(600):
                    view = (await http.get(f"/trials/{tid}", headers=token[org.lead_a])).json()
                    if check(view):
                        return
                    await asyncio.sleep(1)
                raise AssertionError(f"trial {tid} stuck in {view['phase']}")

            await post("approvals", org.lead_a, {"decision": "approve"}, "running")
            check_in = await http.post(
                f"/trials/{tid}/check-ins",
                json={"note": "Godt i gang", "measures": {"overlevering": 14}},
                headers=token[org.part1],
            )
            if check_in.status_code == 200:
                checked_in.append(tid)
            else:  # refused only because the trial period had already run out
                assert check_in.status_code == 409, check_in.text
                assert check_in.json()["kind"] == "PhaseConflict", check_in.text
                late = (await http.get(f"/trials/{tid}", headers=token[org.lead_a])).json()
                ends_at = datetime.fromisoformat(late["deadlines"]["ends_at"])
                assert ends_at <= datetime.now(UTC), (tid, late["phase"], ends_at)
                assert late["phase"] != "running", late["phase"]
            await until(lambda v: v["phase"] == "evaluating")
            evaluation = {
                "worked": "yes",
                "effect": "Kortere",
                "effort": 2,
                "value": 4,
                "prediction_held": "yes",
            }
            for who in (org.proposer, org.part1, org.part2):
                await post("evaluations", who, evaluation)
            await post("outcome", org.lead_b, {"decision": "adopt"}, "adopted")
            await until(lambda v: bool((v.get("follow_up") or {}).get("requested_at")))
            await post("follow-up", org.proposer, {"still_in_use": True}, "adopted")
            return tid

    started = time.perf_counter()
    async with (
        serving(app, settings) as base,
        httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=120) as http,
    ):
        trial_ids = await asyncio.gather(*(lifecycle(http, n) for n in range(TRIALS)))
    elapsed = time.perf_counter() - started
    print(f"{TRIALS} lifecycles through the API in {elapsed:.0f} s; {len(checked_in)} checked in")

    accepted_check_ins = set(checked_in)
    trials = TrialClient(client, pool, task_queue_name)
    env = _Env(client)
    assert len(set(trial_ids)) == TRIALS
    for tid in trial_ids:
        view = await trials.view(tid)  # type: ignore[arg-type]
        row = await pool.fetchrow("SELECT phase, last_seq FROM trials WHERE id = $1::uuid", tid)
        assert row is not None and view.phase is Phase.ADOPTED and view.closed
        assert (row["phase"], row["last_seq"]) == (view.phase.value, view.last_seq)
        assert view.check_ins == (1 if tid in accepted_check_ins else 0), tid
        seqs = [
            r["seq"]
            for r in await pool.fetch(
                "SELECT seq FROM trial_events WHERE trial_id = $1::uuid ORDER BY seq", tid
            )
        ]
        assert seqs == list(range(1, view.last_seq + 1))
        recorded = await recorded_inputs(env, view.workflow_id)  # type: ignore[arg-type]
        assert [i.event.seq for i in recorded] == seqs  # every event once, in order
        wanted = Counter(
            (n.recipient_id, n.kind.value) for i in recorded for n in i.event.notifications
        )
        outbox = Counter(
            (r["recipient_id"], r["kind"])
            for r in await pool.fetch(
                "SELECT recipient_id, kind FROM notifications"
                " WHERE trial_id = $1::uuid AND channel = 'email'",
                tid,
            )
        )
        assert outbox == wanted
