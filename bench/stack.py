"""What every benchmark stands on: a Temporal dev server, a fresh database, worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
from temporalio.client import Client

from store.db import create_pool, migrate
from store.directory import load_directory
from tests.factory import TestOrg, directory_for
from tests.reliability.processes import DevServer, WorkerProcess, wait_polling
from trial_client.client import TrialClient

ADMIN_DSN = os.environ.get("PROVE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

BENCH_POLICY = {
    "approval_sla": "8 hours",
    "reminder_after": "4 hours",
    "escalation_interval": "8 hours",
    "stall_after": "8 hours",
    "evaluation_sla": "8 hours",
    "decision_sla": "8 hours",
    "follow_up_after": "1 seconds",
    "max_trial_length": "12 weeks",
}


@dataclass
class Stack:
    server: DevServer
    client: Client
    pool: asyncpg.Pool
    database_url: str
    org: TestOrg
    folder: Path

    def trials(self, task_queue: str) -> TrialClient:
        return TrialClient(self.client, self.pool, task_queue)

    async def start_worker(self, task_queue: str) -> WorkerProcess:
        worker = WorkerProcess(self.server.address, self.database_url, task_queue)
        worker.start()
        await wait_polling(self.client, worker, seconds=60)
        return worker

    async def start_baseline_worker(self, task_queue: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "bench.baseline_worker", self.server.address, task_queue],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(240):
            from tests.reliability.processes import pollers

            if any(p.startswith(f"{process.pid}@") for p in await pollers(self.client, task_queue)):
                return process
            await asyncio.sleep(0.25)
        raise TimeoutError("baseline worker never polled")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1024 / 1024


async def open_stack(exit_stack: AsyncExitStack) -> Stack:
    folder = Path(exit_stack.enter_context(tempfile.TemporaryDirectory(prefix="prove-bench-")))
    server = DevServer(folder)
    await server.start()
    exit_stack.push_async_callback(server.stop)
    name = f"prove_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    exit_stack.push_async_callback(drop)
    database_url = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    await migrate(database_url)
    pool = await create_pool(database_url, max_size=20)
    exit_stack.push_async_callback(pool.close)
    directory, org = directory_for(BENCH_POLICY)
    await load_directory(pool, directory)
    client = await server.client()
    return Stack(server, client, pool, database_url, org, folder)
