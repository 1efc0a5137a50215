"""The worker's small HTTP side: /metrics for Prometheus, /healthz and /readyz for probes.

The worker has no web framework of its own; this Starlette app runs beside it in the same event
loop, on its own port (PROVE_METRICS_PORT), so a probe that gets an answer knows the loop is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import Worker

from metrics.http import metrics_endpoint

log = logging.getLogger("provehandling.metrics")

READY_TIMEOUT = timedelta(seconds=2)


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    """'ok', or what went wrong, within the readiness timeout."""
    try:
        async with asyncio.timeout(READY_TIMEOUT.total_seconds()):
            await probe()
    except TimeoutError:
        return f"error: no answer within {READY_TIMEOUT.total_seconds():g} seconds"
    except Exception as error:
        return f"error: {type(error).__name__}: {error}"[:300]
    return "ok"


async def readiness(temporal: Client, pool: asyncpg.Pool) -> tuple[bool, dict[str, str]]:
    """Whether Temporal and PostgreSQL both answer in time, with each one's state by name.

    The worker's and the API's /readyz both answer from this, so probes read alike.
    """

    async def temporal_answers() -> None:
        await temporal.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=READY_TIMEOUT
        )

    async def postgres_answers() -> None:
        await pool.fetchval("SELECT 1", timeout=READY_TIMEOUT.total_seconds())

    temporal_state, postgres_state = await asyncio.gather(
        _check(temporal_answers), _check(postgres_answers)
    )
    checks = {"temporal": temporal_state, "postgres": postgres_state}
    return all(state == "ok" for state in checks.values()), checks


def create_ops_app(
    *, temporal: Client, pool: asyncpg.Pool, worker: Worker | None = None
) -> Starlette:
    """The ops endpoints for one process; `worker`, when given, makes liveness fail once it stops.

    The readiness body has the API's /readyz shape: {"status", "checks": {"temporal", "postgres"}}.
    """

    async def healthz(request: Request) -> Response:
        if worker is not None and worker.is_shutdown:
            return JSONResponse({"status": "worker stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, checks = await readiness(temporal, pool)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


class SignalFreeServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to whoever owns the process's stop event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_until(
    server: uvicorn.Server, stop: asyncio.Event, sockets: list[socket.socket] | None = None
) -> None:
    """Serve until `stop` is set (or the server ends by itself), then shut down gracefully."""
    serving = asyncio.create_task(server.serve(sockets=sockets))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving


async def serve_ops(
    app: Starlette,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve `app` until `stop` is set; an already bound `sock` wins over host and port."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    await run_until(SignalFreeServer(config), stop, [sock] if sock is not None else None)
