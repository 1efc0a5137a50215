"""Real components for the notification tests (no tests here): an SMTP server (aiosmtpd), an HTTP
receiver (uvicorn + Starlette) that records requests and answers planned status codes, an
organisation with Teams and webhook settings and a reader in English, and a scoped dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.testing import WorkflowEnvironment

from notifications.channels import Channels
from notifications.dev_smtp import DevMailServer
from notifications.dispatcher import Dispatcher
from schemas.directory import WebhookSubscription
from store.directory import load_directory
from tests.factory import TestOrg, directory_for
from tests.helpers import eventually, free_port
from tests.workflow_cleanup import end_workflows
from workers.settings import Settings

PUBLIC_BASE_URL = "https://prove.example"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records every POST; answers from a per-path plan of status codes, then `always` (200)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    plans: dict[str, list[int]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def answer(self, path: str, *statuses: int, then: int = 200) -> None:
        self.plans[path] = list(statuses)
        self.always[path] = then

    async def _endpoint(self, request: Request) -> Response:
        path = request.url.path
        plan = self.plans.get(path) or []
        status = plan.pop(0) if plan else self.always.get(path, 200)
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Received(path, headers, body, status))
        return Response(status_code=status, content=b"" if status < 300 else b"receiver says no")

    async def start(self) -> None:
        self.port = free_port()
        app = Starlette(routes=[Route("/{rest:path}", self._endpoint, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("the HTTP receiver did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[HttpReceiver]:
    server = HttpReceiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[DevMailServer]:
    server = DevMailServer("127.0.0.1", free_port(), tmp_path / "mail")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class ChannelOrg:
    """A test organisation (tests/factory.py) with Teams on its team unit and one webhook."""

    org: TestOrg
    teams_path: str
    hook_path: str
    secret: str

    def email(self, person_id: str) -> str:
        return next(str(p.email) for p in self.org.people if p.id == person_id)

    def name(self, person_id: str) -> str:
        return next(p.name for p in self.org.people if p.id == person_id)


# Organisations made by make_channel_org in the current test; see close_trials.
CREATED_ORGS: list[str] = []


@pytest.fixture
async def close_trials(env: WorkflowEnvironment, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Terminate the test's trials afterwards, so their timers do not fire in later tests'
    time skipping (the shared time-skipping server runs every timer of every open trial)."""
    CREATED_ORGS.clear()
    try:
        yield
    finally:
        rows = await pool.fetch(
            "SELECT workflow_id FROM trials WHERE organisation_id = ANY($1::text[])",
            list(CREATED_ORGS),
        )
        CREATED_ORGS.clear()
        await end_workflows(env, (row["workflow_id"] for row in rows), "test done")


async def make_channel_org(
    pool: asyncpg.Pool,
    receiver: HttpReceiver,
    policy: dict[str, Any] | None = None,
    *,
    english: tuple[str, ...] = ("part2",),
    webhook_events: list[str] | None = None,
) -> ChannelOrg:
    """A fresh org: everyone reads Danish except `english`; Teams on the team, one webhook."""
    directory, org = directory_for(policy)
    organisation = directory.organisations[0]
    english_ids = {getattr(org, name) for name in english}
    for person in organisation.people:
        if person.id in english_ids:
            person.locale = "en"
    teams_path = f"/teams/{org.id}"
    hook_path = f"/hooks/{org.id}"
    secret = secrets.token_hex(24)
    for unit in organisation.units:
        if unit.id == org.team:
            unit.teams_webhook_url = receiver.url(teams_path)
    organisation.webhooks = [
        WebhookSubscription(
            id="integration",
            url=receiver.url(hook_path),
            secret=secret,
            events=webhook_events or [],
        )
    ]
    await load_directory(pool, directory)
    CREATED_ORGS.append(org.id)
    return ChannelOrg(org=org, teams_path=teams_path, hook_path=hook_path, secret=secret)


def settings_for(mail: DevMailServer | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": mail.port if mail else free_port(),
        "public_base_url": PUBLIC_BASE_URL,
        "smtp_timeout_seconds": 5.0,
        "http_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def dispatcher_for(
    pool: asyncpg.Pool,
    mail: DevMailServer,
    *org_ids: str,
    **options: Any,
) -> AsyncIterator[Dispatcher]:
    """A dispatcher limited to the test's organisations, with quick retries unless told."""
    settings = settings_for(mail)
    channels = Channels.from_settings(settings)
    options = {
        "max_attempts": 3,
        "backoff_seconds": 0.05,
        "organisations": list(org_ids),
        **options,
    }
    options.setdefault("backoff_max_seconds", options["backoff_seconds"] * 8)
    try:
        yield Dispatcher(pool, settings, channels, **options)
    finally:
        await channels.aclose()


async def wait_for_event(pool: asyncpg.Pool, trial_id: UUID, kind: str, count: int = 1) -> None:
    async def recorded() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM trial_events WHERE trial_id = $1 AND kind = $2", trial_id, kind
        )
        return int(n) >= count

    await eventually(recorded)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())
