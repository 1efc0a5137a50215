"""Stored first answers of POST requests sent with an Idempotency-Key.

The key is scoped to the caller (organisation, person), so two people can never collide or read
each other's answers. The answer is stored with the request's method, path and a hash of its body:
a retry of the same request gets the stored answer back, a different request under the same key
is refused. Making the *action* happen once is not done here but by Temporal (update ids and
deterministic workflow ids derived from the key); this table makes the *answer* repeatable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

RETENTION = timedelta(hours=24)  # how long a key is remembered; a retry later acts anew


@dataclass(frozen=True)
class StoredAnswer:
    method: str
    path: str
    request_hash: str
    status_code: int
    body: Any
    headers: dict[str, str]

    def matches(self, method: str, path: str, request_hash: str) -> bool:
        return (self.method, self.path, self.request_hash) == (method, path, request_hash)


def request_hash(body: Any) -> str:
    """A stable hash of a request body's data (key order and whitespace do not matter)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _answer(row: asyncpg.Record) -> StoredAnswer:
    return StoredAnswer(
        method=row["method"],
        path=row["path"],
        request_hash=row["request_hash"],
        status_code=row["status_code"],
        body=row["body"],
        headers=dict(row["headers"]),
    )


async def find(
    pool: asyncpg.Pool, organisation_id: str, person_id: str, key: str
) -> StoredAnswer | None:
    """The answer stored for the caller's key, unless it is older than RETENTION."""
    row = await pool.fetchrow(
        """
        SELECT method, path, request_hash, status_code, body, headers
        FROM idempotency_keys
        WHERE organisation_id = $1 AND person_id = $2 AND key = $3
          AND created_at > now() - $4::interval
        """,
        organisation_id,
        person_id,
        key,
        RETENTION,
    )
    return None if row is None else _answer(row)


async def store(
    pool: asyncpg.Pool,
    organisation_id: str,
    person_id: str,
    key: str,
    answer: StoredAnswer,
) -> tuple[StoredAnswer, bool]:
    """Store the answer unless one is already stored; returns the kept answer and if it is ours.

    Two identical requests that raced both acted through Temporal's deduplication and got the
    same result; the first to store wins and both callers are given the same stored answer.
    An expired answer under the same key is replaced.
    """
    row = await pool.fetchrow(
        """
        INSERT INTO idempotency_keys AS k
            (organisation_id, person_id, key, method, path, request_hash, status_code, body,
             headers)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (organisation_id, person_id, key) DO UPDATE SET
            method = EXCLUDED.method, path = EXCLUDED.path,
            request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
            body = EXCLUDED.body, headers = EXCLUDED.headers, created_at = now()
        WHERE k.created_at <= now() - $10::interval
        RETURNING 1
        """,
        organisation_id,
        person_id,
        key,
        answer.method,
        answer.path,
        answer.request_hash,
        answer.status_code,
        answer.body,
        answer.headers,
        RETENTION,
    )
    if row is not None:
        return answer, True
    kept = await find(pool, organisation_id, person_id, key)
    return (kept, False) if kept is not None else (answer, True)


async def purge(pool: asyncpg.Pool) -> int:
    """Delete answers older than RETENTION; returns how many."""
    result = await pool.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= now() - $1::interval", RETENTION
    )
    return int(result.split()[-1])
