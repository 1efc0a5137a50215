"""Production auth: tokens from an OIDC issuer, verified against its JWKS (RS256/ES256)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import TokenVerifier, create_token
from api.errors import ApiError
from tests.api_fixtures import Api, api_fixture, api_server_fixture, api_settings, serving  # noqa: F401
from tests.factory import FAST_POLICY, make_org

ISSUER = "https://login.kommune.example/realms/ansatte"
AUDIENCE = "provehandling"


def _jwk(public_key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    if algorithm == "RS256":
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


async def test_tokens_verified_against_the_issuers_jwks(
    api: Api, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    org = await make_org(pool, FAST_POLICY)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = {
        "keys": [
            _jwk(rsa_key.public_key(), "rsa-1", "RS256"),
            _jwk(ec_key.public_key(), "ec-1", "ES256"),
        ]
    }
    issuer = FastAPI()

    @issuer.get("/certs")
    async def certs() -> dict[str, Any]:
        return keys

    def token(key: Any, kid: str, algorithm: str, **claims: Any) -> str:
        now = datetime.now(UTC)
        body = {
            "sub": org.lead_a,
            "org": org.id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + timedelta(minutes=5),
            **claims,
        }
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})

    async with serving(issuer, api.settings) as issuer_url:
        settings = api_settings(
            api.settings.task_queue,
            jwks_url=f"{issuer_url}/certs",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
        )
        app = create_app(settings, temporal_client=env.client, pool=pool)
        async with (
            serving(app, settings) as base_url,
            httpx.AsyncClient(base_url=f"{base_url}/api/v1") as http,
        ):

            async def status(bearer: str) -> tuple[int, str]:
                response = await http.get("/inbox", headers={"Authorization": f"Bearer {bearer}"})
                return response.status_code, response.json().get("detail", "")

            assert (await status(token(rsa_key, "rsa-1", "RS256")))[0] == 200
            assert (await status(token(ec_key, "ec-1", "ES256")))[0] == 200

            refused = {
                "wrong audience": token(rsa_key, "rsa-1", "RS256", aud="another-app"),
                "wrong issuer": token(rsa_key, "rsa-1", "RS256", iss="https://evil.example"),
                "unknown key": token(stranger_key, "rsa-9", "RS256"),
                "key of another kid": token(stranger_key, "rsa-1", "RS256"),
                "shared secret": api.token(org.lead_a, org.id),
                "another org": token(rsa_key, "rsa-1", "RS256", org="someone-else"),
            }
            for case, bearer in refused.items():
                code, detail = await status(bearer)
                assert code == 401, case
                assert detail.startswith("invalid token"), (case, detail)


async def test_callers_directory_entry_is_cached_briefly_and_tokens_still_checked(
    pool: asyncpg.Pool,
) -> None:
    """A burst of requests costs one directory look-up; a removed person is refused once the
    cache time has passed; an expired token is refused even while its person is cached."""
    org = await make_org(pool, FAST_POLICY)
    settings = api_settings("unused", caller_cache_seconds=5.0)
    clock = [1000.0]
    verifier = TokenVerifier(settings, timer=lambda: clock[0])
    statements: list[str] = []

    async def logged() -> int:
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not during, the query
        return sum("FROM people" in query for query in statements)  # directory look-ups

    async with pool.acquire() as conn:
        conn.add_query_logger(lambda record: statements.append(record.query))
        await logged()
        statements.clear()
        token = create_token(settings, org.part1, org.id)

        for _ in range(3):
            caller = await verifier.caller(conn, token)  # type: ignore[arg-type]
            assert (caller.person_id, caller.organisation_id) == (org.part1, org.id)
        assert await logged() == 1

        expired = create_token(settings, org.part1, org.id, ttl=timedelta(minutes=-5))
        with pytest.raises(ApiError) as refused:
            await verifier.caller(conn, expired)  # type: ignore[arg-type]
        assert refused.value.status_code == 401

        removal = conn.transaction()
        await removal.start()
        try:
            await conn.execute("DELETE FROM unit_members WHERE person_id = $1", org.part1)
            await conn.execute("DELETE FROM people WHERE id = $1", org.part1)
            await verifier.caller(conn, token)  # type: ignore[arg-type] # cached: still known
            clock[0] += 5.1
            with pytest.raises(ApiError) as gone:
                await verifier.caller(conn, token)  # type: ignore[arg-type]
            assert gone.value.status_code == 401
            assert "not in the directory" in gone.value.detail
            looked_up = await logged()
            with pytest.raises(ApiError):  # a refusal is never cached
                await verifier.caller(conn, token)  # type: ignore[arg-type]
            assert await logged() > looked_up
        finally:
            await removal.rollback()  # the person comes back for the rest of the test

        uncached = TokenVerifier(api_settings("unused", caller_cache_seconds=0))
        await logged()
        statements.clear()
        for _ in range(2):
            await uncached.caller(conn, token)  # type: ignore[arg-type]
        assert await logged() == 2
