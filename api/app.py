"""The FastAPI application: wiring of Temporal, PostgreSQL, auth and routes.

`create_app` takes an already connected Temporal client and pool when given (tests pass the ones
of their fixtures) and otherwise opens its own in the lifespan. Both are opened lazily, so the
process starts and answers /healthz while a dependency is still down, and /readyz says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api import errors, openapi, routes
from api.auth import TokenVerifier
from api.deps import API_PREFIX, Clock, Services, system_clock
from metrics.http import instrument_app
from store import idempotency
from store.db import create_pool
from trial_client.client import TrialClient
from workers.settings import Settings

log = logging.getLogger("provehandling.api")

PURGE_EVERY = timedelta(hours=1)


async def connect_temporal(settings: Settings) -> Client:
    """A client that connects on first use, so the API starts while Temporal is still down."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=True,
    )


async def _purge_idempotency_keys(pool: asyncpg.Pool) -> None:
    while True:
        try:
            removed = await idempotency.purge(pool)
            if removed:
                log.info("purged %d expired idempotency keys", removed)
        except Exception as error:  # the next round tries again
            log.warning("could not purge idempotency keys: %s", error)
        await asyncio.sleep(PURGE_EVERY.total_seconds())


def create_app(
    settings: Settings,
    *,
    temporal_client: Client | None = None,
    pool: asyncpg.Pool | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The API app; `clock` tells "now" (tests pass the Temporal test server's clock)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = pool is None
        if pool is None:
            if settings.database_url is None:
                raise RuntimeError("PROVE_DATABASE_URL is not set; the API needs PostgreSQL")
            db = await create_pool(settings.database_url, min_size=0)
        else:
            db = pool
        client = temporal_client or await connect_temporal(settings)
        app.state.services = Services(
            settings=settings,
            temporal=client,
            pool=db,
            trials=TrialClient(client, db, settings.task_queue),
            verifier=TokenVerifier(settings),
            clock=clock or system_clock,
        )
        purger = asyncio.create_task(_purge_idempotency_keys(db))
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            if own_pool:
                await db.close()

    app = FastAPI(
        title="Prøvehandlinger API",
        version="1.0.0",
        summary="Propose, approve, run, evaluate and decide prøvehandlinger (trial actions).",
        description=openapi.DESCRIPTION,
        openapi_tags=openapi.TAGS,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    errors.install(app)
    instrument_app(app)  # request durations by route template and status, and /metrics
    app.include_router(routes.health_router, include_in_schema=False)  # probes at the root
    app.include_router(routes.health_router, prefix=API_PREFIX)
    app.include_router(routes.router, prefix=API_PREFIX)
    openapi.install(app)
    return app
