"""Helpers for the metrics tests: free loopback ports, an SDK-metrics worker, scraping.

The SDK worker is a real Worker on a client whose runtime exports Temporal's metrics with
metrics.sdk's Prometheus settings, so the tests learn the SDK's metric names by scraping them
rather than by trusting a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from metrics.sdk import temporal_runtime
from schemas.commands import OutcomeDecision
from schemas.trial import Phase, TrialView
from tests.factory import FAST_POLICY, make_org
from tests.helpers import as_, evaluation_by, free_port, running_trial, wait_for
from tests.workflow_cleanup import end_workflows
from trial_client.client import TrialClient
from workers.binaries import temporal_cli
from workers.temporal_setup import register_search_attributes
from workers.worker import build_worker


def bound_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port, for uvicorn's `sockets=`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def scrape(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def sample_names(exposition: str) -> set[str]:
    """Metric names of the samples in a Prometheus text exposition."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


@functools.cache
def sdk_runtime() -> tuple[Runtime, int]:
    """One SDK runtime per test process (each runtime binds its exporter's port for good)."""
    port = free_port()
    return temporal_runtime(f"127.0.0.1:{port}"), port


# A workflow and an activity that fail on purpose, so the failure counters exist to be scraped.


@activity.defn(name="metrics_probe_fail")
async def failing_activity() -> None:
    raise RuntimeError("failing on purpose for the activity failure counter")


@workflow.defn(name="MetricsProbeWorkflow", sandboxed=False)
class ProbeWorkflow:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                failing_activity,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except Exception:
            return "activity failed as planned"
        return "unexpected"


@workflow.defn(name="MetricsBrokenWorkflow", sandboxed=False)
class BrokenWorkflow:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("failing a workflow task on purpose")  # a task failure, retried


@dataclass
class SdkWorker:
    client: Client
    trials: TrialClient
    task_queue: str
    metrics_port: int
    started: list[str] = field(default_factory=list)  # workflow ids to terminate at the end

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@contextlib.asynccontextmanager
async def sdk_worker(env: WorkflowEnvironment, pool: asyncpg.Pool) -> AsyncIterator[SdkWorker]:
    """The trial worker (workers.worker.build_worker) plus the failure probes, on a client whose
    runtime exports SDK metrics, each on a task queue of its own.

    Trials started on it are terminated before its workers stop: a timer firing later would put a
    task on a queue nobody polls, and the time-skipping server never skips past such a task.
    """
    runtime, port = sdk_runtime()
    client = await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    probes = Worker(
        client,
        task_queue=f"{queue}-probes",
        workflows=[ProbeWorkflow, BrokenWorkflow],
        activities=[failing_activity],
    )
    async with build_worker(client, pool, queue), probes:
        worker = SdkWorker(client, TrialClient(client, pool, queue), queue, port)
        try:
            yield worker
        finally:
            await end_workflows(env, worker.started, "test done")


async def adopted_trial(
    env: WorkflowEnvironment, worker: SdkWorker, pool: asyncpg.Pool
) -> tuple[str, TrialView]:
    """A fresh organisation and one trial taken to adopted on the SDK worker: (org id, view)."""
    org = await make_org(pool, policy=FAST_POLICY)
    view = await running_trial(env, worker.trials, org, duration="5 seconds")
    worker.started.append(view.workflow_id)
    view = await wait_for(env, worker.trials, view.trial_id, lambda v: v.phase is Phase.EVALUATING)
    for person in (org.proposer, org.part1, org.part2):
        view = await worker.trials.command(view.trial_id, "evaluate", evaluation_by(person))
    assert view.phase is Phase.DECIDING
    view = await worker.trials.command(
        view.trial_id,
        "decide_outcome",
        OutcomeDecision(actor=as_(org.lead_a), decision="adopt"),
    )
    assert view.phase is Phase.ADOPTED
    return org.id, view


@contextlib.asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A `temporal` dev server of its own, for what the shared test server must not see.

    The time-skipping test server stops skipping time for good once a workflow task has failed,
    so the failure probes run here, whichever server the suite runs against.
    """
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        await register_search_attributes(environment.client)
        yield environment
    finally:
        await environment.shutdown()


async def fail_on_purpose(worker: SdkWorker) -> None:
    """One failed activity and at least one failed workflow task, recorded by the SDK metrics.

    Only against a dev server (see dev_server): a failed workflow task wedges time skipping.
    """
    queue = f"{worker.task_queue}-probes"
    result = await worker.client.execute_workflow(
        ProbeWorkflow.run, id=f"probe-{uuid.uuid4()}", task_queue=queue
    )
    assert result == "activity failed as planned"
    broken = await worker.client.start_workflow(
        BrokenWorkflow.run, id=f"broken-{uuid.uuid4()}", task_queue=queue
    )
    try:
        for _ in range(100):  # bounded: a workflow task fails within a second or two
            if "temporal_workflow_task_execution_failed_total" in sample_names(
                await asyncio.to_thread(scrape, worker.metrics_url)
            ):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("no workflow task failure showed up in the SDK metrics")
    finally:
        await broken.terminate("metrics probe done")


# --- PromQL: which metric names an expression reads ---------------------------------------------

PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, so Prometheus can evaluate it."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    expr = expr.replace("$__interval", "1m")
    return _GRAFANA_VARIABLE.sub(".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, labels, keywords or durations)."""
    text = _LABEL_VALUES.sub(r"\1", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    text = _GRAFANA_VARIABLE.sub("1", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        token = match.group(0)
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # 1e3, 5m after offset
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or aggregation
            continue
        if token.lower() in PROMQL_KEYWORDS:
            continue
        names.add(token)
    return names
