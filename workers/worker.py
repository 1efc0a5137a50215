"""The worker process: runs TrialWorkflow and its activities until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.worker import Worker

from activities.notification_activities import NotificationActivities
from activities.trial_activities import TrialActivities
from metrics.domain import record_delivery
from metrics.ops_app import create_ops_app, serve_ops
from metrics.read_model_gauges import ReadModelGauges
from metrics.sdk import temporal_runtime
from notifications.channels import Channels
from notifications.dispatcher import Dispatcher
from store.db import create_pool
from workers.settings import Settings
from workflows.digest import DigestWorkflow
from workflows.trial import TrialWorkflow

log = logging.getLogger("provehandling.worker")


def _tls(settings: Settings) -> TLSConfig | bool:
    """mTLS from the configured files; plain TLS for an API key (Temporal Cloud); else none."""
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
            server_root_ca_cert=(
                settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None
            ),
        )
    return settings.temporal_api_key is not None


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=_tls(settings),
        api_key=settings.temporal_api_key,
        runtime=runtime,
    )


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    *,
    max_cached_workflows: int = Settings.model_fields["max_cached_workflows"].default,
) -> Worker:
    """One worker serving trial and digest workflows and their activities on task_queue."""
    activities = TrialActivities(pool)
    notification_activities = NotificationActivities(pool)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[TrialWorkflow, DigestWorkflow],
        activities=[*activities.all(), *notification_activities.all()],
        max_cached_workflows=max_cached_workflows,
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
    sdk_address = (
        f"{settings.metrics_host}:{settings.sdk_metrics_port}"
        if settings.sdk_metrics_port
        else None
    )
    client = await connect_temporal(settings, temporal_runtime(sdk_address))
    pool = await create_pool(settings.database_url)
    worker = build_worker(
        client, pool, settings.task_queue, max_cached_workflows=settings.max_cached_workflows
    )
    # Probes and domain metrics answer from the start, so a slow first poll is visible.
    ops_stop = asyncio.Event()
    ops_tasks = [
        asyncio.create_task(ReadModelGauges(pool).run(ops_stop, settings.metrics_refresh_seconds))
    ]
    if settings.metrics_port:
        ops_app = create_ops_app(temporal=client, pool=pool, worker=worker)
        ops_tasks.append(
            asyncio.create_task(
                serve_ops(ops_app, settings.metrics_host, settings.metrics_port, ops_stop)
            )
        )
    log.info("worker started on task queue %s", settings.task_queue)
    run_task = asyncio.create_task(worker.run())
    stop_task = asyncio.create_task(stop.wait())
    # The outbox dispatcher runs beside the worker; it stops on its own event, after the worker,
    # so deliveries caused by the last in-flight activities still go out before the pool closes.
    dispatcher_stop = asyncio.Event()
    channels = Channels.from_settings(settings)
    dispatcher_task: asyncio.Task[None] | None = None
    if settings.dispatcher_enabled:
        dispatcher = Dispatcher(pool, settings, channels)
        dispatcher.stats.listeners.append(record_delivery)
        dispatcher_task = asyncio.create_task(dispatcher.run(dispatcher_stop))
    done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if stop_task in done:
        log.info("stopping worker: finishing in-flight tasks")
        await worker.shutdown()
    try:
        await run_task
    finally:
        stop_task.cancel()
        dispatcher_stop.set()
        if dispatcher_task is not None:
            await dispatcher_task
        await channels.aclose()
        ops_stop.set()
        await asyncio.gather(*ops_tasks, return_exceptions=True)
        await pool.close()
    log.info("worker stopped")
