"""Metrics, health and logs: the read-model gauges, counting recorded events once, the ops app.

Metrics live in the process-wide registry that other tests also feed, so every assertion looks at
this test's own organisation or at the change a step made.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.trial_activities import TrialActivities
from metrics import domain
from metrics.http import instrument_app
from metrics.logging import event_fields, json_formatter, log_event
from metrics.ops_app import create_ops_app, serve_ops
from metrics.read_model_gauges import ReadModelGauges
from schemas.trial import EventKind, Phase, RecordEventInput, TrialEvent, TrialView
from store.db import create_pool
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import running_trial
from tests.metrics_support import bound_socket
from trial_client.client import TrialClient
from workflows.calendar import COPENHAGEN


def value(name: str, **labels: str) -> float:
    """A sample's value now (0 when the labelled child does not exist)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def present(name: str, **labels: str) -> bool:
    return REGISTRY.get_sample_value(name, labels) is not None


# ------------------------------------------------------------------ gauges from the read model


async def insert_trial(
    pool: asyncpg.Pool,
    organisation: str,
    phase: str,
    *,
    stalled: bool = False,
    due_at: datetime | None = None,
) -> uuid.UUID:
    trial_id = uuid.uuid4()
    now = datetime.now(UTC)
    await pool.execute(
        """
        INSERT INTO trials (id, workflow_id, organisation_id, unit_id, proposer_id, title, phase,
                            iteration, stalled, escalation_level, last_seq, created_at,
                            last_activity_at, view, due_at)
        VALUES ($1, $2, $3, 'unit', 'someone', 'Titel', $4, 1, $5, 0, 1, $6, $6, $7, $8)
        """,
        trial_id,
        f"trial-{trial_id}",
        organisation,
        phase,
        stalled,
        now,
        {},
        due_at,
    )
    return trial_id


async def test_gauges_follow_the_read_model_and_forget_what_disappeared(
    pool: asyncpg.Pool,
) -> None:
    org = f"gauges-{uuid.uuid4().hex[:8]}"
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    ids = [
        await insert_trial(pool, org, "proposed", due_at=now - timedelta(hours=1)),  # overdue
        await insert_trial(pool, org, "proposed", due_at=now - timedelta(seconds=1)),  # overdue
        await insert_trial(pool, org, "proposed", due_at=now + timedelta(hours=1)),
        await insert_trial(pool, org, "running", stalled=True),
        await insert_trial(pool, org, "running"),
        await insert_trial(pool, org, "adopted"),
    ]
    gauges = ReadModelGauges(pool)
    await gauges.refresh(now=now)
    assert value("provehandling_trials", organisation=org, phase="proposed") == 3
    assert value("provehandling_trials", organisation=org, phase="running") == 2
    assert value("provehandling_trials", organisation=org, phase="adopted") == 1
    assert not present("provehandling_trials", organisation=org, phase="scheduled")
    assert value("provehandling_stalled_trials", organisation=org) == 1
    assert value("provehandling_approvals_past_sla", organisation=org) == 2
    assert value("provehandling_read_model_gauges_refreshed_timestamp_seconds") > 0

    # An hour later the third proposal is overdue too.
    await gauges.refresh(now=now + timedelta(hours=2))
    assert value("provehandling_approvals_past_sla", organisation=org) == 3

    # Trials move on and disappear: their labels go instead of keeping stale values.
    await pool.execute("UPDATE trials SET phase = 'scheduled', due_at = NULL WHERE id = $1", ids[0])
    await gauges.refresh(now=now)
    assert value("provehandling_trials", organisation=org, phase="proposed") == 2
    assert value("provehandling_trials", organisation=org, phase="scheduled") == 1
    assert value("provehandling_approvals_past_sla", organisation=org) == 1
    await pool.execute("DELETE FROM trials WHERE organisation_id = $1", org)
    await gauges.refresh(now=now)
    for phase in ("proposed", "scheduled", "running", "adopted"):
        assert not present("provehandling_trials", organisation=org, phase=phase)
    assert not present("provehandling_stalled_trials", organisation=org)
    assert not present("provehandling_approvals_past_sla", organisation=org)


async def test_organisations_without_trials_report_zero(pool: asyncpg.Pool) -> None:
    org = await make_org(pool)
    await ReadModelGauges(pool).refresh()
    assert present("provehandling_stalled_trials", organisation=org.id)
    assert value("provehandling_stalled_trials", organisation=org.id) == 0
    assert value("provehandling_approvals_past_sla", organisation=org.id) == 0


async def test_outbox_backlog_and_age_of_the_oldest_row(pool: asyncpg.Pool) -> None:
    org = f"outbox-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    oldest = now - timedelta(days=30)  # older than anything another test leaves pending
    rows = [(oldest, "pending"), (now - timedelta(minutes=5), "sending"), (oldest, "sent")]
    for created_at, status in rows:
        await pool.execute(
            """
            INSERT INTO notifications (idempotency_key, trial_id, event_seq, organisation_id,
                                       recipient_id, kind, status, created_at)
            VALUES ($1, $2, 1, $3, 'someone', 'reminder', $4, $5)
            """,
            f"metrics-test:{uuid.uuid4()}",
            uuid.uuid4(),
            org,
            status,
            created_at,
        )
    await pool.execute(
        """
        INSERT INTO webhook_deliveries (delivery_id, organisation_id, subscription_id,
                                        trial_id, seq, event_kind, created_at)
        VALUES ($1, $2, 'hook', $3, 1, 'approved', $4)
        """,
        uuid.uuid4(),
        org,
        uuid.uuid4(),
        oldest,
    )
    try:
        before = await ReadModelGauges(pool).read(now=now)
        await ReadModelGauges(pool).refresh(now=now)
        email = value("provehandling_outbox_pending", channel="email")
        assert email >= 2 and email == before.outbox["email"][0]
        age = value("provehandling_outbox_oldest_pending_age_seconds", channel="email")
        assert age == pytest.approx(timedelta(days=30).total_seconds(), abs=1)
        for channel in domain.CHANNELS:  # every channel reports, zero when nothing waits
            assert present("provehandling_outbox_pending", channel=channel)
        assert value("provehandling_outbox_pending", channel="webhook") >= 1
        assert value(
            "provehandling_outbox_oldest_pending_age_seconds", channel="webhook"
        ) == pytest.approx(timedelta(days=30).total_seconds(), abs=1)
    finally:
        await pool.execute("DELETE FROM notifications WHERE organisation_id = $1", org)
        await pool.execute("DELETE FROM webhook_deliveries WHERE organisation_id = $1", org)


async def test_refresh_loop_survives_a_failing_round(pool: asyncpg.Pool, database_url: str) -> None:
    broken = await create_pool(database_url, max_size=1)
    await broken.close()
    errors = value("provehandling_read_model_gauges_refresh_errors_total")
    stop = asyncio.Event()
    task = asyncio.create_task(ReadModelGauges(broken).run(stop, interval=0.05))
    for _ in range(100):  # bounded: two failed rounds take ~0.1 s
        if value("provehandling_read_model_gauges_refresh_errors_total") >= errors + 2:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert value("provehandling_read_model_gauges_refresh_errors_total") >= errors + 2


# ------------------------------------------------------------------ counting recorded events


def _event(
    view: TrialView, seq: int, kind: EventKind, phase: Phase, at: datetime, **data: Any
) -> RecordEventInput:
    return RecordEventInput(
        event=TrialEvent(
            trial_id=view.trial_id,
            seq=seq,
            iteration=1,
            kind=kind,
            occurred_at=at,
            phase=phase,
            actor_id=view.proposer_id,
            data=data,
        ),
        view=view.model_copy(update={"phase": phase, "last_seq": seq, "updated_at": at}),
    )


async def test_record_event_counts_once_even_when_retried(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    org = await make_org(pool, {"extra_holidays": ["03-03"]})  # Tuesday 3 March is a day off
    proposed_at = datetime(2026, 3, 2, 9, 0, tzinfo=COPENHAGEN)  # Monday
    approved_at = datetime(2026, 3, 6, 15, 30, tzinfo=COPENHAGEN)  # Friday
    proposal = proposal_for(org, proposed_at.date())
    view = TrialView(
        trial_id=uuid.uuid4(),
        workflow_id="trial-test",
        organisation_id=org.id,
        unit_id=org.team,
        proposer_id=org.proposer,
        proposal=proposal,
        policy=org.policy,
        created_at=proposed_at,
        updated_at=proposed_at,
    )
    items = [
        _event(view, 1, EventKind.PROPOSED, Phase.PROPOSED, proposed_at, title=proposal.title),
        _event(
            view,
            2,
            EventKind.ESCALATED,
            Phase.PROPOSED,
            proposed_at + timedelta(days=1),
            step="approval",
            level=1,
        ),
        _event(view, 3, EventKind.APPROVAL_GIVEN, Phase.PROPOSED, approved_at, comment="Fint"),
        _event(view, 4, EventKind.APPROVED, Phase.SCHEDULED, approved_at),
    ]
    activities = TrialActivities(pool)
    environment = ActivityEnvironment()
    caplog.set_level(logging.INFO, logger="provehandling.activities")
    for item in items:
        assert await environment.run(activities.record_event, item) is True
        assert await environment.run(activities.record_event, item) is False  # a retry

    assert (
        value("provehandling_phase_transitions_total", organisation=org.id, phase="proposed") == 1
    )
    assert (
        value("provehandling_phase_transitions_total", organisation=org.id, phase="scheduled") == 1
    )
    assert (
        value("provehandling_escalations_total", organisation=org.id, step="approval", level="1")
        == 1
    )
    seconds = (approved_at - proposed_at).total_seconds()
    assert value("provehandling_approval_duration_seconds_count", organisation=org.id) == 1
    assert value("provehandling_approval_duration_seconds_sum", organisation=org.id) == seconds
    # Tue 3 is the organisation's day off: Wed, Thu, Fri count.
    assert value("provehandling_approval_duration_working_days_sum", organisation=org.id) == 3
    assert (
        value("provehandling_approval_duration_working_days_bucket", organisation=org.id, le="3.0")
        == 1
    )

    # One log line per first write, with ids only.
    lines = [r for r in caplog.records if r.name == "provehandling.activities"]
    assert [r.__dict__["event"] for r in lines] == [i.event.kind.value for i in items]
    formatter = json_formatter()
    for record in lines:
        line = json.loads(formatter.format(record))
        assert line["trial_id"] == str(view.trial_id)
        assert line["organisation"] == org.id
        assert line["workflow_id"] == "trial-test"
        text = json.dumps(line)
        for private in (org.proposer, proposal.title, "Fint", *[p.email for p in org.people]):
            assert private not in text


async def test_a_real_lifecycle_counts_its_transitions(
    env: WorkflowEnvironment, trials: TrialClient, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    view = await running_trial(env, trials, org)
    assert view.phase is Phase.RUNNING
    for phase in ("proposed", "scheduled", "running"):
        assert value("provehandling_phase_transitions_total", organisation=org.id, phase=phase) == 1
    assert value("provehandling_approval_duration_seconds_count", organisation=org.id) == 1
    await ReadModelGauges(pool).refresh()
    assert value("provehandling_trials", organisation=org.id, phase="running") == 1


# ------------------------------------------------------------------ logs


def test_json_lines_carry_the_fields_and_nothing_personal(pool: asyncpg.Pool) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("provehandling.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    trial_id = uuid.uuid4()
    event = TrialEvent(
        trial_id=trial_id,
        seq=7,
        iteration=2,
        kind=EventKind.ESCALATED,
        occurred_at=datetime.now(UTC),
        phase=Phase.PROPOSED,
        actor_id="maria.gonzalez",
        data={"step": "approval", "level": 2, "to": ["mette.lund"], "comment": "privat"},
    )
    try:
        log_event(logger, event, "aarhus")
        logger.warning("plain line")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(first)[:4] == ["ts", "level", "logger", "message"]
    assert first["level"] == "INFO" and first["logger"] == "provehandling.test-json"
    assert first["message"] == "trial event escalated"
    assert first["trial_id"] == str(trial_id) and first["workflow_id"] == f"trial-{trial_id}"
    assert first["organisation"] == "aarhus" and first["event"] == "escalated"
    assert first["step"] == "approval" and first["rung"] == 2
    assert datetime.fromisoformat(first["ts"]).tzinfo is not None
    for private in ("maria.gonzalez", "mette.lund", "privat"):
        assert private not in json.dumps(first)
    assert set(event_fields(event, "aarhus")) <= {
        "trial_id",
        "workflow_id",
        "organisation",
        "event",
        "phase",
        "seq",
        "iteration",
        "step",
        "rung",
    }
    assert second["level"] == "WARNING" and second["message"] == "plain line"


# ------------------------------------------------------------------ HTTP: ops app and the API


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """The app on a real loopback socket through uvicorn; yields its base URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(serve_ops(app, "127.0.0.1", port, stop, sock=sock))
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(100):  # bounded: uvicorn starts within a few hundred ms
                with contextlib.suppress(httpx.TransportError):
                    await client.get(f"{base}/healthz")
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("ops app did not start")
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        sock.close()


async def test_ops_app_answers_probes_and_scrapes(
    env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    await ReadModelGauges(pool).refresh()
    async with serving(create_ops_app(temporal=env.client, pool=pool)) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            health = await http.get(f"{base}/healthz")
            assert health.status_code == 200 and health.json() == {"status": "ok"}
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ready",
                "checks": {"temporal": "ok", "postgres": "ok"},
            }
            scraped = await http.get(f"{base}/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            assert "# TYPE provehandling_trials gauge" in scraped.text
            assert "provehandling_phase_transitions_total" in scraped.text
            openmetrics = await http.get(
                f"{base}/metrics", headers={"Accept": "application/openmetrics-text"}
            )
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")


async def test_readyz_names_postgres_when_the_pool_is_closed(
    env: WorkflowEnvironment, database_url: str
) -> None:
    closed = await create_pool(database_url, max_size=1)
    await closed.close()
    async with serving(create_ops_app(temporal=env.client, pool=closed)) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
            ready = await http.get(f"{base}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["temporal"] == "ok"
    assert body["checks"]["postgres"].startswith("error:")


async def test_readyz_names_temporal_when_it_does_not_answer(pool: asyncpg.Pool) -> None:
    with bound_socket() as nothing_listens:  # a port that is bound but never accepts
        port = nothing_listens.getsockname()[1]
        unreachable = await Client.connect(f"127.0.0.1:{port}", lazy=True)
        async with serving(create_ops_app(temporal=unreachable, pool=pool)) as base:
            async with httpx.AsyncClient(timeout=10) as http:
                ready = await http.get(f"{base}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["temporal"].startswith("error:")


async def test_liveness_fails_once_the_worker_stopped(
    env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    worker = Worker(
        env.client,
        task_queue=f"ops-{uuid.uuid4().hex[:8]}",
        activities=TrialActivities(pool).all(),
    )
    app = create_ops_app(temporal=env.client, pool=pool, worker=worker)
    async with serving(app) as base, httpx.AsyncClient(timeout=10) as http:
        async with worker:
            assert (await http.get(f"{base}/healthz")).status_code == 200
        stopped = await http.get(f"{base}/healthz")
    assert stopped.status_code == 503


async def test_api_requests_are_timed_by_route_template() -> None:
    app = FastAPI()

    @app.get("/api/v1/trials/{trial_id}")
    async def trial(trial_id: str) -> dict[str, str]:
        return {"id": trial_id}

    instrument_app(app)
    route = "/api/v1/trials/{trial_id}"
    before = value(
        "provehandling_http_request_duration_seconds_count", route=route, method="GET", status="200"
    )
    unmatched = value(
        "provehandling_http_request_duration_seconds_count",
        route="unmatched",
        method="GET",
        status="404",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        for _ in range(3):
            assert (await http.get(f"/api/v1/trials/{uuid.uuid4()}")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
        scraped = await http.get("/metrics")
    assert (
        value(
            "provehandling_http_request_duration_seconds_count",
            route=route,
            method="GET",
            status="200",
        )
        == before + 3
    )
    assert (
        value(
            "provehandling_http_request_duration_seconds_count",
            route="unmatched",
            method="GET",
            status="404",
        )
        == unmatched + 1
    )
    assert 'route="/api/v1/trials/{trial_id}"' in scraped.text
    assert "/metrics" not in app.openapi()["paths"]


def test_record_delivery_keeps_labels_bounded() -> None:
    before = value("provehandling_notifications_total", channel="teams", outcome="sent")
    other = value("provehandling_notifications_total", channel="other", outcome="other")
    domain.record_delivery("teams", "sent")
    domain.record_delivery("carrier-pigeon", "lost")
    assert value("provehandling_notifications_total", channel="teams", outcome="sent") == before + 1
    assert value("provehandling_notifications_total", channel="other", outcome="other") == other + 1


def test_domain_metric_names_follow_the_conventions() -> None:
    names = {f.name for f in REGISTRY.collect() if f.name.startswith(domain.PREFIX)}
    assert {
        "provehandling_trials",
        "provehandling_phase_transitions",
        "provehandling_approval_duration_seconds",
        "provehandling_approval_duration_working_days",
        "provehandling_escalations",
        "provehandling_stalled_trials",
        "provehandling_approvals_past_sla",
        "provehandling_notifications",
        "provehandling_outbox_pending",
        "provehandling_outbox_oldest_pending_age_seconds",
        "provehandling_http_request_duration_seconds",
    } <= names
    forbidden = {"trial_id", "person_id", "proposer_id", "workflow_id", "actor_id", "recipient_id"}
    for family in REGISTRY.collect():
        if family.name.startswith(domain.PREFIX):
            for sample in family.samples:
                assert not forbidden & set(sample.labels), sample
    assert domain.WORKFLOW_DURATION_BUCKETS[-1] == 12 * domain.WEEK
