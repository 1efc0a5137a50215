"""A real Prometheus scrapes a running worker's ops app and the SDK exporter while a trial runs
its lifecycle, and finds the domain and SDK metrics through its query API.

Prometheus is Debian's binary, started on a free loopback port with a generated configuration
(scrape every second) and stopped afterwards. The dashboard's queries and the alert rules are
evaluated by it too, so a query that does not parse fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import create_token
from metrics.ops_app import create_ops_app, serve_ops
from metrics.read_model_gauges import ReadModelGauges
from tests.api_fixtures import api_settings, serving
from tests.metrics_support import (
    adopted_trial,
    bound_socket,
    free_port,
    grafana_to_promql,
    sdk_worker,
)

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "provehandling.json"
WAIT_SECONDS = 60.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs it from Debian")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return found


@contextlib.asynccontextmanager
async def running_prometheus(targets: dict[str, str], folder: Path) -> AsyncIterator[str]:
    """Prometheus scraping `targets` (job -> host:port) every second; yields its base URL."""
    binary = prometheus_binary()
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    log_file = folder / "prometheus.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(150):  # bounded: up to 30 s to become ready
                if process.returncode is not None:
                    raise AssertionError(f"prometheus exited: {log_file.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{base}/-/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"prometheus never got ready: {log_file.read_text()[-2000:]}")
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), timeout=5)


async def query(http: httpx.AsyncClient, base: str, expr: str) -> list[dict[str, Any]]:
    response = await http.get(f"{base}/api/v1/query", params={"query": expr})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


async def wait_for_value(
    http: httpx.AsyncClient, base: str, expr: str, expected: float | None = None
) -> float:
    """Poll until `expr` has a sample (equal to `expected` when given); bounded in time."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    seen: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        seen = await query(http, base, expr)
        if seen:
            found = float(seen[0]["value"][1])
            if expected is None or found == expected:
                return found
        await asyncio.sleep(0.5)
    raise AssertionError(
        f"{expr}: wanted {expected if expected is not None else 'a value'}, saw {seen}"
    )


async def test_prometheus_finds_domain_and_sdk_metrics(
    env: WorkflowEnvironment, pool: asyncpg.Pool, tmp_dir: Path
) -> None:
    prometheus_binary()
    stop = asyncio.Event()
    async with sdk_worker(env, pool) as worker:
        ops_socket = bound_socket()
        ops_port = ops_socket.getsockname()[1]
        app = create_ops_app(temporal=worker.client, pool=pool)
        tasks = [
            asyncio.create_task(ReadModelGauges(pool).run(stop, interval=0.5)),
            asyncio.create_task(serve_ops(app, "127.0.0.1", ops_port, stop, sock=ops_socket)),
        ]
        api_config = api_settings(worker.task_queue)
        api_app = create_app(api_config, temporal_client=worker.client, pool=pool)
        try:
            async with (
                serving(api_app, api_config) as api_url,
                running_prometheus(
                    {
                        "provehandling-worker": f"127.0.0.1:{ops_port}",
                        "temporal-sdk": f"127.0.0.1:{worker.metrics_port}",
                        "provehandling-api": api_url.removeprefix("http://"),
                    },
                    tmp_dir,
                ) as base,
                httpx.AsyncClient(timeout=5) as http,
            ):
                targets = ("provehandling-worker", "temporal-sdk", "provehandling-api")
                for job in targets:
                    await wait_for_value(http, base, f'up{{job="{job}"}}', 1)
                org, view = await adopted_trial(env, worker, pool)
                of_org = f'organisation="{org}"'
                await wait_for_value(
                    http, base, f'provehandling_trials{{{of_org},phase="adopted"}}', 1
                )
                for phase in ("proposed", "scheduled", "running", "evaluating", "deciding"):
                    await wait_for_value(
                        http,
                        base,
                        f'provehandling_phase_transitions_total{{{of_org},phase="{phase}"}}',
                        1,
                    )
                await wait_for_value(
                    http, base, f"provehandling_approval_duration_seconds_count{{{of_org}}}", 1
                )
                await wait_for_value(
                    http, base, f"provehandling_approval_duration_working_days_count{{{of_org}}}", 1
                )
                await wait_for_value(http, base, f"provehandling_stalled_trials{{{of_org}}}", 0)
                # the registry is the process's: earlier tests may have counted this route too
                listing = (
                    "provehandling_http_request_duration_seconds_count"
                    '{job="provehandling-api",route="/api/v1/trials",method="GET",status="200"}'
                )
                before = await query(http, base, listing)
                counted = float(before[0]["value"][1]) if before else 0.0
                token = create_token(api_config, view.proposer_id, org)
                listed = await http.get(
                    f"{api_url}/api/v1/trials", headers={"Authorization": f"Bearer {token}"}
                )
                assert listed.status_code == 200 and listed.json()["items"]
                await wait_for_value(http, base, listing, counted + 1)
                queue = f'task_queue="{worker.task_queue}"'
                executed = await wait_for_value(
                    http,
                    base,
                    f"sum(temporal_workflow_task_execution_latency_seconds_count{{{queue}}})",
                )
                assert executed > 0
                recorded = await wait_for_value(
                    http,
                    base,
                    "sum(temporal_activity_execution_latency_seconds_count"
                    f'{{{queue},activity_type="record_events"}})',
                )
                assert 1 <= recorded <= view.last_seq  # one recording per command or timer step

                # Every dashboard query and alert rule parses and evaluates in this Prometheus.
                dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
                for panel in dashboard["panels"]:
                    for target in panel.get("targets", []):
                        await query(http, base, grafana_to_promql(target["expr"]))
                rules = (await http.get(f"{base}/api/v1/rules")).json()["data"]["groups"]
                loaded = [r for group in rules for r in group["rules"] if r["type"] == "alerting"]
                assert {r["name"] for r in loaded} >= {"ApprovalsPastSLA", "WorkerDown"}
                assert all(r["health"] != "err" for r in loaded), loaded
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
            ops_socket.close()
