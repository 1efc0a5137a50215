"""Run the API with uvicorn inside an existing event loop, stoppable by an event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from metrics.ops_app import SignalFreeServer, run_until
from workers.settings import Settings

log = logging.getLogger("provehandling.api")


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # the process's logging setup applies
        access_log=False,
        lifespan="on",
        proxy_headers=True,
        server_header=False,
    )


def build_server(settings: Settings) -> uvicorn.Server:
    """A uvicorn server for the API that leaves signal handling to its owner (the dev stack)."""
    return SignalFreeServer(uvicorn_config(create_app(settings), settings))


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the API on settings.api_host:api_port until `stop` is set (or SIGINT/SIGTERM)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    server = build_server(settings)
    log.info("API listening on http://%s:%d", settings.api_host, settings.api_port)
    await run_until(server, stop)
    log.info("API stopped")
