"""Faults a trial must survive over its months of life: killed workers, a killed Temporal server,
PostgreSQL refusing connections, and a worker lost while busy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from temporalio.client import Client

from schemas.commands import ApprovalDecision
from schemas.trial import Phase, Step, TrialView
from tests.factory import make_org, proposal_for
from tests.helpers import as_, events_of, eventually
from tests.reliability.processes import DevServer, FlakyProxy, WorkerProcess, wait_polling
from trial_client.client import TrialClient
from workflows.calendar import BusinessCalendar

SECONDS_POLICY = {
    "approval_sla": "12 seconds",
    "reminder_after": "6 seconds",
    "escalation_interval": "6 seconds",
    "max_escalation_levels": 2,
    "stall_after": "1 hours",
    "evaluation_sla": "1 hours",
    "decision_sla": "1 hours",
}

# Faults other than the ladder's: nothing should escalate however loaded the machine is.
QUIET_POLICY = {**SECONDS_POLICY, "approval_sla": "1 hours", "reminder_after": "30 minutes"}


async def timer_fired_times(client: Client, workflow_id: str) -> list[datetime]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.HasField("timer_fired_event_attributes")
    ]


async def assert_contiguous_and_matching(
    client: Client, pool: asyncpg.Pool, trials: TrialClient, trial_id: object
) -> list[asyncpg.Record]:
    rows = await events_of(pool, trial_id)  # type: ignore[arg-type]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    view = await trials.view(trial_id)  # type: ignore[arg-type]
    assert view.last_seq == len(rows)
    row = await pool.fetchrow("SELECT phase, last_seq FROM trials WHERE id = $1", trial_id)
    assert row is not None and row["phase"] == view.phase.value and row["last_seq"] == len(rows)
    return rows


def close(a: datetime, b: datetime, seconds: float = 2.0) -> bool:
    return abs((a - b).total_seconds()) <= seconds


async def test_killed_worker_the_trial_goes_on_and_timers_keep_their_deadlines(
    dev_server: DevServer,
    pool: asyncpg.Pool,
    task_queue_name: str,
    worker_processes: Callable[..., WorkerProcess],
) -> None:
    client = await dev_server.client()
    trials = TrialClient(client, pool, task_queue_name)
    org = await make_org(pool, SECONDS_POLICY)
    first = worker_processes()
    await wait_polling(client, first)
    day = BusinessCalendar.today(datetime.now().astimezone())
    view = await trials.propose(as_(org.proposer), proposal_for(org, day))
    proposed_at = (await events_of(pool, view.trial_id))[0]["occurred_at"]

    first.kill()  # the approval step waits on its reminder timer (due at +6 s)
    await asyncio.sleep(8)  # the reminder comes due while no worker runs
    second = worker_processes()
    await wait_polling(client, second)

    async def escalated_twice() -> bool:
        found = await trials.view(view.trial_id)
        return found.clocks[Step.APPROVAL].level == 2

    await eventually(escalated_twice, within=60, step=0.25, what="two escalations")
    rows = await assert_contiguous_and_matching(client, pool, trials, view.trial_id)
    assert [r["kind"] for r in rows] == ["proposed", "reminded", "escalated", "escalated"]
    due = [datetime.fromisoformat(r["data"]["due_at"]) for r in rows[1:]]
    expected = [proposed_at + timedelta(seconds=n) for n in (6, 12, 18)]
    assert due == expected, "each rung keeps its original deadline, however late it was run"
    clock = (await trials.view(view.trial_id)).clocks[Step.APPROVAL]
    assert clock.reminded_at == expected[0] and clock.last_rung_at == expected[2]
    # the server fired every timer at its deadline, worker or no worker
    fired = await timer_fired_times(client, view.workflow_id)
    assert fired, "timers fired"
    for moment in fired:
        assert any(close(moment, deadline, 1.5) for deadline in expected), moment
    assert any(close(moment, expected[0], 1.5) for moment in fired)


async def test_killed_temporal_server_loses_nothing(
    dev_server: DevServer,
    pool: asyncpg.Pool,
    task_queue_name: str,
    worker_processes: Callable[..., WorkerProcess],
) -> None:
    client = await dev_server.client()
    trials = TrialClient(client, pool, task_queue_name)
    org = await make_org(pool, QUIET_POLICY)
    worker = worker_processes()
    await wait_polling(client, worker)
    day = BusinessCalendar.today(datetime.now().astimezone())
    from schemas.duration import Duration

    views: list[TrialView] = []
    for n in range(5):
        proposal = proposal_for(
            org, day, title=f"Forsøg {n}", planned_duration=Duration.model_validate("10 seconds")
        )
        view = await trials.propose(as_(org.proposer), proposal)
        views.append(
            await trials.command(
                view.trial_id,
                "decide_approval",
                ApprovalDecision(actor=as_(org.lead_a), decision="approve"),
            )
        )
    assert all(v.phase is Phase.RUNNING for v in views)

    await dev_server.kill()  # while every trial waits on its end-date timer
    await asyncio.sleep(3)
    await dev_server.start()
    client = await dev_server.client()
    trials = TrialClient(client, pool, task_queue_name)

    async def all_evaluating() -> bool:
        phases = [(await trials.view(v.trial_id)).phase for v in views]
        return all(p is Phase.EVALUATING for p in phases)

    await eventually(all_evaluating, within=60, step=0.25, what="every trial to reach evaluation")
    for view in views:
        rows = await assert_contiguous_and_matching(client, pool, trials, view.trial_id)
        kinds = [r["kind"] for r in rows]
        assert kinds[:4] == ["proposed", "approval_given", "approved", "started"]
        assert kinds[-1] == "ended" and set(kinds[4:-1]) <= {"reminded"}  # check-in reminder


async def test_postgres_refusing_connections_delays_but_loses_nothing(
    dev_server: DevServer,
    pool: asyncpg.Pool,
    database_url: str,
    task_queue_name: str,
    worker_processes: Callable[..., WorkerProcess],
) -> None:
    parts = urlsplit(database_url)
    proxy = FlakyProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.accept()
    proxied = urlunsplit(
        parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}")
    )
    client = await dev_server.client()
    trials = TrialClient(client, pool, task_queue_name)
    org = await make_org(pool, QUIET_POLICY)
    worker = worker_processes(proxied)
    await wait_polling(client, worker)
    day = BusinessCalendar.today(datetime.now().astimezone())
    views = [
        await trials.propose(as_(org.proposer), proposal_for(org, day, title=f"Forsøg {n}"))
        for n in range(4)
    ]

    await proxy.refuse()  # PostgreSQL is gone for the worker, mid-transition
    approvals = [
        asyncio.create_task(
            trials.command(
                v.trial_id,
                "decide_approval",
                ApprovalDecision(actor=as_(org.lead_b), decision="approve"),
            )
        )
        for v in views
    ]
    await asyncio.sleep(6)
    assert not any(task.done() for task in approvals), "no approval can be recorded while down"
    await proxy.accept()
    done = await asyncio.wait_for(asyncio.gather(*approvals), 90)
    assert all(v.phase is Phase.RUNNING for v in done)
    for view in views:
        rows = await assert_contiguous_and_matching(client, pool, trials, view.trial_id)
        assert [r["kind"] for r in rows] == ["proposed", "approval_given", "approved", "started"]
        outbox = await pool.fetch(
            "SELECT idempotency_key FROM notifications WHERE trial_id = $1", view.trial_id
        )
        keys = [r["idempotency_key"] for r in outbox]
        assert len(keys) == len(set(keys)) and keys
    await proxy.refuse()


async def test_two_workers_one_killed_while_busy_leaves_no_trial_stuck(
    dev_server: DevServer,
    pool: asyncpg.Pool,
    task_queue_name: str,
    worker_processes: Callable[..., WorkerProcess],
) -> None:
    from schemas.duration import Duration

    client = await dev_server.client()
    trials = TrialClient(client, pool, task_queue_name)
    org = await make_org(pool, QUIET_POLICY)
    doomed, survivor = worker_processes(), worker_processes()
    await wait_polling(client, doomed)
    await wait_polling(client, survivor)
    day = BusinessCalendar.today(datetime.now().astimezone())

    async def start_one(n: int) -> TrialView:
        proposal = proposal_for(
            org, day, title=f"Forsøg {n}", planned_duration=Duration.model_validate("8 seconds")
        )
        view = await trials.propose(as_(org.proposer), proposal)
        return await trials.command(
            view.trial_id,
            "decide_approval",
            ApprovalDecision(actor=as_(org.lead_a), decision="approve"),
        )

    busy = [asyncio.create_task(start_one(n)) for n in range(20)]
    await asyncio.sleep(1.0)
    doomed.kill()  # while trials are being proposed, approved and started
    views = await asyncio.wait_for(asyncio.gather(*busy), 120)

    async def all_evaluating() -> bool:
        phases = [(await trials.view(v.trial_id)).phase for v in views]
        return all(p is Phase.EVALUATING for p in phases)

    await eventually(all_evaluating, within=90, step=0.25, what="every trial to reach evaluation")
    for view in views:
        rows = await assert_contiguous_and_matching(client, pool, trials, view.trial_id)
        kinds = [r["kind"] for r in rows if r["kind"] != "reminded"]  # timing-dependent
        assert kinds == ["proposed", "approval_given", "approved", "started", "ended"]
