"""The API served for real: uvicorn on a free port of 127.0.0.1, in the tests' event loop.

It uses the session's Temporal server, worker task queue and database, and the Temporal server's
clock, so "today" for substitute periods agrees with the workflows' even when time-skipping has
moved the clock. Test modules import the fixtures they use from here explicitly, by their function
names (`api_fixture` registers the fixture `api`, which needs `api_server_fixture` imported too),
so test parameters do not shadow the imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import create_token
from api.server import uvicorn_config
from metrics.ops_app import SignalFreeServer, run_until
from schemas.trial import Phase
from tests.factory import TestOrg, proposal_for
from tests.workflow_cleanup import end_workflows
from workers.settings import Settings
from workflows.calendar import BusinessCalendar

TEST_SECRET = "api-test-secret-that-is-long-enough-for-hs256"


def api_settings(task_queue: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "task_queue": task_queue,
        "database_url": None,
        "jwt_secret": TEST_SECRET,
        "jwt_issuer": None,
        "jwt_audience": None,
        "jwks_url": None,
        "api_host": "127.0.0.1",
        "api_port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    """Serve `app` on a free port until the block ends; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = SignalFreeServer(uvicorn_config(app, settings))
    stop = asyncio.Event()
    task = asyncio.create_task(run_until(server, stop, sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "the API did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task
        sock.close()


@dataclass
class Api:
    """The running API and how to call it as someone."""

    base_url: str
    settings: Settings
    env: WorkflowEnvironment
    pool: asyncpg.Pool

    def token(self, person_id: str, organisation_id: str) -> str:
        return create_token(self.settings, person_id, organisation_id)

    def headers(self, person_id: str, org: TestOrg | str) -> dict[str, str]:
        org_id = org if isinstance(org, str) else org.id
        return {"Authorization": f"Bearer {self.token(person_id, org_id)}"}

    def client(self, person_id: str | None = None, org: TestOrg | str | None = None) -> Client:
        headers = self.headers(person_id, org) if person_id and org else {}
        return Client(
            httpx.AsyncClient(
                base_url=f"{self.base_url}/api/v1", headers=headers, timeout=httpx.Timeout(60)
            )
        )

    async def today(self) -> date:
        return BusinessCalendar.today(await self.env.get_current_time())


class Client:
    """An httpx client under /api/v1 that says which status it expected when it fails."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    async def request(
        self, method: str, url: str, *, expect: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = await self.http.request(method, url, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} {url}: expected {expect}, got {response.status_code}: {response.text}"
            )
        return response

    async def get(self, url: str, *, expect: int | None = 200, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, expect=expect, **kwargs)

    async def post(self, url: str, *, expect: int | None = 200, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, expect=expect, **kwargs)

    async def propose(
        self, org: TestOrg, start: date, *, expect: int = 201, **overrides: Any
    ) -> dict[str, Any]:
        body = proposal_for(org, start, **overrides).model_dump(mode="json")
        response = await self.post("/trials", json=body, expect=expect)
        result: dict[str, Any] = response.json()
        return result

    async def view(self, trial_id: UUID | str) -> dict[str, Any]:
        result: dict[str, Any] = (await self.get(f"/trials/{trial_id}")).json()
        return result

    async def kinds(self, trial_id: UUID | str) -> list[str]:
        events = (await self.get(f"/trials/{trial_id}/events")).json()
        return [e["kind"] for e in events["items"]]


async def wait_until(
    env: WorkflowEnvironment,
    probe: Callable[[], Awaitable[bool]],
    *,
    step: timedelta = timedelta(seconds=1),
    attempts: int = 60,
) -> None:
    """Let server time pass in steps until `probe` holds (time-skipping moves time, dev waits)."""
    for _ in range(attempts):
        if await probe():
            return
        await env.sleep(step)
    assert await probe(), "condition never held"


async def wait_for_phase(
    env: WorkflowEnvironment, client: Client, trial_id: str, phase: Phase
) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await client.view(trial_id))["phase"] == phase.value)

    await wait_until(env, reached)
    return await client.view(trial_id)


@pytest.fixture(scope="session", name="api_server")
async def api_server_fixture(
    env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Api]:
    """The API for the whole run, on the session's Temporal server, worker and database."""
    settings = api_settings(task_queue)
    app = create_app(settings, temporal_client=env.client, pool=pool, clock=env.get_current_time)
    async with serving(app, settings) as base_url:
        yield Api(base_url, settings, env, pool)


@pytest.fixture(name="api")
async def api_fixture(api_server: Api) -> AsyncIterator[Api]:
    """The API; trials a test starts are terminated after it.

    On the time-skipping server every open trial wakes up whenever a later test skips weeks
    ahead; terminating ours keeps that cost with the tests that cause it.
    """
    started_at = await api_server.pool.fetchval("SELECT clock_timestamp()")
    yield api_server
    rows = await api_server.pool.fetch(
        """
        SELECT t.workflow_id FROM trials t
        JOIN trial_events e ON e.trial_id = t.id AND e.seq = 1
        WHERE e.recorded_at >= $1
        """,
        started_at,
    )
    await end_workflows(api_server.env, (row["workflow_id"] for row in rows), "the test is over")
