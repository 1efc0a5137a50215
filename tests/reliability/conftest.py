"""Fixtures for the fault tests: each test gets its own dev server (with a database file)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.processes import DevServer, WorkerProcess


@pytest.fixture
async def dev_server() -> AsyncIterator[DevServer]:
    with tempfile.TemporaryDirectory(prefix="prove-rel-") as folder:
        server = DevServer(Path(folder))
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@pytest.fixture
def task_queue_name() -> str:
    return f"rel-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def worker_processes(
    dev_server: DevServer, database_url: str, task_queue_name: str
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def launch(database: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(dev_server.address, database or database_url, task_queue_name)
        worker.start()
        started.append(worker)
        return worker

    yield launch
    for worker in started:
        worker.stop()
