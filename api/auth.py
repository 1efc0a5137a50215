"""Bearer JWTs: who calls, and for which organisation.

A token names a person (`sub`) and their organisation (`org`), nothing more: roles (leader,
substitute, admin) always come from the directory, never from the token, so a forged or stale
claim cannot grant anything. Development signs with a shared secret (HS256); production verifies
against an OIDC issuer's JWKS (RS256/ES256) with issuer and audience checked. A token for a person
who is not in the directory, or not in the token's organisation, is as bad as a bad signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
from cachetools import TTLCache
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError, unauthorized
from store import directory_queries
from workers.settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT whose `sub` is your person id and `org` your organisation id.",
)
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
LEEWAY = timedelta(seconds=30)  # clock skew between the issuer and us


@dataclass(frozen=True)
class Caller:
    """The verified person behind a request, with what the directory says about them."""

    person_id: str
    organisation_id: str
    admin: bool
    units: tuple[str, ...]
    leads: tuple[str, ...]


def create_token(
    settings: Settings,
    person_id: str,
    organisation_id: str,
    ttl: timedelta = timedelta(hours=8),
) -> str:
    """An HS256 token signed with the configured secret (development, tests, the CLI)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": person_id,
        "org": organisation_id,
        "iat": now,
        "exp": now + ttl,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


async def token_for_person(
    pool: asyncpg.Pool, settings: Settings, person_id: str, ttl: timedelta = timedelta(hours=8)
) -> str:
    """A token for a person in the directory (their organisation looked up); LookupError if none."""
    person = await directory_queries.person(pool, person_id)
    if person is None:
        raise LookupError(f"no person {person_id!r} in the directory")
    return create_token(settings, person.id, person.organisation_id, ttl)


CALLER_CACHE_SIZE = 10_000


class TokenVerifier:
    """Checks signature, expiry, issuer and audience; then finds the person in the directory.

    The directory answer is kept for `caller_cache_seconds` per (person, organisation), so a burst
    of requests from one person costs one look-up; only people found are kept, and the token
    itself is verified on every request.
    """

    def __init__(self, settings: Settings, timer: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._callers: TTLCache[tuple[str, str], Caller] | None = (
            TTLCache(CALLER_CACHE_SIZE, settings.caller_cache_seconds, timer=timer)
            if settings.caller_cache_seconds > 0
            else None
        )
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)
            if settings.jwks_url
            else None
        )

    async def _key(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is None:
            return self.settings.jwt_secret, ["HS256"]
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise ApiError(
                503, "the identity provider's keys cannot be fetched; try again shortly"
            ) from None
        return signing_key.key, ASYMMETRIC_ALGORITHMS

    async def claims(self, token: str) -> dict[str, Any]:
        """The token's verified claims; raises 401 for anything wrong with it."""
        try:
            key, algorithms = await self._key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=LEEWAY,
                options={"require": ["sub", "org", "exp"]},
            )
        except jwt.PyJWTError as error:
            raise unauthorized(f"invalid token: {error}") from None
        for name in ("sub", "org"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise unauthorized(f"invalid token: claim {name!r} must be a non-empty string")
        return claims

    async def caller(self, pool: asyncpg.Pool, token: str) -> Caller:
        claims = await self.claims(token)
        key = (claims["sub"], claims["org"])
        if self._callers is not None and (known := self._callers.get(key)) is not None:
            return known
        found = await self._look_up(pool, *key)
        if self._callers is not None:
            self._callers[key] = found
        return found

    async def _look_up(self, pool: asyncpg.Pool, person_id: str, organisation_id: str) -> Caller:
        person = await directory_queries.person(pool, person_id)
        if person is None or person.organisation_id != organisation_id:
            raise unauthorized(
                "invalid token: its person is not in the directory of its organisation"
            )
        return Caller(
            person_id=person.id,
            organisation_id=person.organisation_id,
            admin=person.admin,
            units=tuple(person.units),
            leads=tuple(person.leads),
        )


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials
