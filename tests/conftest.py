"""Shared fixtures: a fresh PostgreSQL database per test run, and the Temporal servers.

Like temporalio/samples-python, `--server=time-skipping` (default) or `--server=dev` chooses which
real Temporal server the whole suite runs against.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from store.db import create_pool, migrate
from store.embedded import server_answers, start_embedded_postgres
from tests.factory import TestOrg, make_org
from tests.helpers import fresh_database
from trial_client.client import TrialClient
from workers.binaries import temporal_cli, temporal_test_server
from workers.temporal_setup import register_search_attributes
from workers.worker import build_worker

ADMIN_DSN = os.environ.get("PROVE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server",
        default="time-skipping",
        choices=["time-skipping", "dev"],
        help="which real Temporal server the tests run against",
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def admin_dsn() -> AsyncIterator[str]:
    """The machine's PostgreSQL when it answers, else an embedded one for this run."""
    if await server_answers(ADMIN_DSN):
        yield ADMIN_DSN
        return
    folder = Path(tempfile.mkdtemp(prefix="prove-pg-"))
    server, dsn = start_embedded_postgres(folder)
    try:
        yield dsn
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def database_url(admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own for this test run, migrated, dropped afterwards."""
    async with fresh_database(admin_dsn, "prove_test") as dsn:
        await migrate(dsn)
        yield dsn


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=20)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# ---------------------------------------------------------------- Temporal


@pytest.fixture(scope="session")
def server_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--server"))


@pytest.fixture(scope="session")
async def env(server_kind: str) -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal server for the whole run: time-skipping (Java test server) or dev (CLI)."""
    if server_kind == "dev":
        environment = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli(),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
    else:
        environment = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=temporal_test_server(),
            data_converter=pydantic_data_converter,
        )
    await register_search_attributes(environment.client)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="session")
async def task_queue(env: WorkflowEnvironment, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A worker serving the trial workflow for the whole run, on a queue of its own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = build_worker(env.client, pool, queue)
    async with worker:
        yield queue


@pytest.fixture(scope="session")
def trials(env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> TrialClient:
    return TrialClient(env.client, pool, task_queue)


@pytest.fixture
async def org(pool: asyncpg.Pool) -> TestOrg:
    """A fresh organisation with a three-level unit tree (see tests/factory.py)."""
    return await make_org(pool)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of long timers need the time-skipping server; skip them on the dev server."""
    if config.getoption("--server") != "dev":
        return
    skip = pytest.mark.skip(reason="needs the time-skipping server")
    for item in items:
        if "time_skipping_only" in item.keywords:
            item.add_marker(skip)
