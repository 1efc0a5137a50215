"""The worker process: runs TrialWorkflow and its activities until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.trial_activities import TrialActivities
from store.db import create_pool
from workers.settings import Settings
from workflows.trial import TrialWorkflow

log = logging.getLogger("provehandling.worker")


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def build_worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> Worker:
    """One worker serving trial workflows and their activities on task_queue."""
    activities = TrialActivities(pool)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[TrialWorkflow],
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then finish in-flight tasks and exit."""
    if settings.database_url is None:
        raise SystemExit("PROVE_DATABASE_URL is not set; the worker needs PostgreSQL")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    client = await connect_temporal(settings)
    pool = await create_pool(settings.database_url)
    worker = build_worker(client, pool, settings.task_queue)
    log.info("worker started on task queue %s", settings.task_queue)
    run_task = asyncio.create_task(worker.run())
    stop_task = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if stop_task in done:
        log.info("stopping worker: finishing in-flight tasks")
        await worker.shutdown()
    await run_task
    stop_task.cancel()
    await pool.close()
    log.info("worker stopped")
