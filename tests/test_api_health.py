"""/healthz answers while the process runs; /readyz only when Temporal and PostgreSQL answer."""

from __future__ import annotations

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from store.db import create_pool
from tests.api_fixtures import Api, api_fixture, api_server_fixture, api_settings, serving  # noqa: F401
from tests.factory import FAST_POLICY, make_org
from tests.helpers import free_port


async def test_healthz_and_readyz_when_all_answer(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        for path in ("/healthz", "/api/v1/healthz"):
            response = await http.get(path)
            assert response.status_code == 200 and response.json() == {"status": "ok"}
        for path in ("/readyz", "/api/v1/readyz"):
            response = await http.get(path)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "status": "ready",
                "checks": {"temporal": "ok", "postgres": "ok"},
            }


async def test_readyz_names_what_does_not_answer(
    api: Api, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    async with api.client(org.proposer, org) as proposer:
        trial = await proposer.propose(org, await api.today())
    dead_db = await create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0)
    dead_temporal = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=pydantic_data_converter
    )
    settings = api.settings
    cases = [
        (dead_temporal, pool, {"temporal"}),
        (env.client, dead_db, {"postgres"}),
        (dead_temporal, dead_db, {"temporal", "postgres"}),
    ]
    try:
        for client, db, failing in cases:
            app = create_app(settings, temporal_client=client, pool=db)
            async with (
                serving(app, settings) as base_url,
                httpx.AsyncClient(base_url=base_url) as http,
            ):
                assert (await http.get("/healthz")).status_code == 200
                response = await http.get("/readyz")
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "not ready"
                assert {name for name, state in body["checks"].items() if state != "ok"} == failing
                for name in failing:
                    assert body["checks"][name].startswith("error: ")
                if failing == {"temporal"}:
                    response = await http.post(
                        f"/api/v1/trials/{trial['trial_id']}/approvals",
                        json={"decision": "approve"},
                        headers=api.headers(org.lead_a, org),
                    )
                    assert response.status_code == 503
                    assert response.json()["detail"].startswith("Temporal is not answering")
                if "postgres" in failing:
                    response = await http.get(
                        "/api/v1/trials", headers=api.headers(org.lead_a, org)
                    )
                    assert response.status_code == 503
                    assert response.headers["retry-after"] == "1"
                    assert response.json()["detail"].startswith("the database is not answering")
    finally:
        await dead_db.close()
