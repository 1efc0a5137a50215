"""Small helpers for driving trials in tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from schemas.commands import Actor
from schemas.trial import RecordEventInput, RecordEventsInput, TrialView
from trial_client.client import TrialClient
from workflows.calendar import BusinessCalendar

if TYPE_CHECKING:
    from schemas.commands import Evaluation
    from tests.factory import TestOrg


def free_port() -> int:
    """A loopback port free right now (for servers that take a number, not a socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    """dsn naming database `name` instead; its query (e.g. ?host=/socket/dir) is kept."""
    address, mark, query = dsn.partition("?")
    base, _, _ = address.rpartition("/")
    return f"{base}/{name}{mark}{query}"


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database named `prefix_<random>`; yields its DSN and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def as_(person_id: str, on_behalf_of: str | None = None) -> Actor:
    return Actor(person_id=person_id, on_behalf_of=on_behalf_of)


async def today(env: WorkflowEnvironment) -> date:
    """The server's current day in Copenhagen (time-skipping moves it)."""
    return BusinessCalendar.today(await env.get_current_time())


async def wait_for(
    env: WorkflowEnvironment,
    trials: TrialClient,
    trial_id: UUID,
    predicate: Callable[[TrialView], bool],
    *,
    step: timedelta = timedelta(seconds=1),
    attempts: int = 60,
) -> TrialView:
    """Let server time pass in steps until the trial's view satisfies predicate."""
    for _ in range(attempts):
        view = await trials.view(trial_id)
        if predicate(view):
            return view
        await env.sleep(step)
    view = await trials.view(trial_id)
    assert predicate(view), f"condition never held; trial is {view.phase} ({view.last_seq} events)"
    return view


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    within: float = 20.0,
    step: float = 0.05,
    what: str = "the condition",
) -> None:
    """Wait in real time until `check` holds (an event recorded, a message received)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def events_of(pool: asyncpg.Pool, trial_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM trial_events WHERE trial_id = $1 ORDER BY seq", trial_id)


async def kinds_of(pool: asyncpg.Pool, trial_id: UUID) -> list[str]:
    return [r["kind"] for r in await events_of(pool, trial_id)]


async def outbox_of(pool: asyncpg.Pool, trial_id: UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT recipient_id, kind FROM notifications WHERE trial_id = $1 ORDER BY id", trial_id
    )
    return [(r["recipient_id"], r["kind"]) for r in rows]


async def accepted_updates(env: WorkflowEnvironment, workflow_id: str) -> int:
    """How many updates made it into the workflow's history (refused ones never do)."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        1
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    )


async def running_trial(
    env: WorkflowEnvironment,
    trials: TrialClient,
    org: TestOrg,
    duration: str = "4 weeks",
) -> TrialView:
    """A trial proposed, approved by lead_a and started today."""
    from schemas.commands import ApprovalDecision
    from schemas.duration import Duration
    from tests.factory import proposal_for

    proposal = proposal_for(
        org, await today(env), planned_duration=Duration.model_validate(duration)
    )
    view = await trials.propose(as_(org.proposer), proposal)
    return await trials.command(
        view.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_a), decision="approve"),
    )


def evaluation_by(person: str) -> Evaluation:
    from schemas.commands import Evaluation

    return Evaluation(
        actor=as_(person),
        worked="partly",
        effect="Lidt kortere",
        effort=3,
        value=3,
        prediction_held="no",
    )


async def deciding_trial(env: WorkflowEnvironment, trials: TrialClient, org: TestOrg) -> TrialView:
    """A trial whose short period is over and that everyone has evaluated."""
    from schemas.trial import Phase

    view = await running_trial(env, trials, org, duration="5 seconds")
    view = await wait_for(env, trials, view.trial_id, lambda v: v.phase is Phase.EVALUATING)
    for person in (org.proposer, org.part1, org.part2):
        view = await trials.command(view.trial_id, "evaluate", evaluation_by(person))
    assert view.phase is Phase.DECIDING
    return view


async def run_histories(env: WorkflowEnvironment, workflow_id: str) -> list[WorkflowHistory]:
    """Every run's history of a workflow, first run first (follows continue-as-new back)."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        run_id = started.continued_execution_run_id
    return list(reversed(histories))


async def recorded_inputs(env: WorkflowEnvironment, workflow_id: str) -> list[RecordEventInput]:
    """Every event the workflow's histories scheduled for recording, one input per event."""
    found: list[RecordEventInput] = []
    for history in await run_histories(env, workflow_id):
        for e in history.events:
            if not e.HasField("activity_task_scheduled_event_attributes"):
                continue
            attrs = e.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "record_event":  # before batched recording
                [item] = await env.client.data_converter.decode(
                    attrs.input.payloads, [RecordEventInput]
                )
                found.append(item)
            elif attrs.activity_type.name == "record_events":
                [batch] = await env.client.data_converter.decode(
                    attrs.input.payloads, [RecordEventsInput]
                )
                found.extend(RecordEventInput(event=ev, view=batch.view) for ev in batch.events)
    return found


async def assert_events_match_history(
    env: WorkflowEnvironment, pool: asyncpg.Pool, trial_id: UUID, workflow_id: str
) -> int:
    """PostgreSQL holds exactly the events the Temporal history recorded, contiguous from 1."""
    recorded = await recorded_inputs(env, workflow_id)
    rows = await events_of(pool, trial_id)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [(i.event.seq, i.event.kind.value) for i in recorded] == [
        (r["seq"], r["kind"]) for r in rows
    ]
    return len(rows)
