"""What request handlers depend on: the process's services and the verified caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from temporalio.client import Client

from api.auth import Caller, TokenVerifier, bearer_scheme, bearer_token
from trial_client.client import TrialClient
from workers.settings import Settings
from workflows.calendar import BusinessCalendar

API_PREFIX = "/api/v1"

Clock = Callable[[], Awaitable[datetime]]


async def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """What request handlers need, created once per process in the app's lifespan."""

    settings: Settings
    temporal: Client
    pool: asyncpg.Pool
    trials: TrialClient
    verifier: TokenVerifier
    clock: Clock

    async def now(self) -> datetime:
        return await self.clock()

    async def today(self) -> date:
        """The day in Copenhagen: the day substitute periods and deadlines are counted in."""
        return BusinessCalendar.today(await self.clock())


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def current_caller(
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    """The person the bearer token names, as the directory knows them (401 otherwise)."""
    return await svc.verifier.caller(svc.pool, bearer_token(credentials))


CallerDep = Annotated[Caller, Depends(current_caller)]
