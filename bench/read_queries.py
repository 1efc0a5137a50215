"""GET /trials and GET /inbox at 1,000, 10,000 and 100,000 trials: the API beside raw asyncpg.

The raw side replays, on one asyncpg connection, exactly the SQL statements (with arguments) that
the API's own query functions ran for the same request, captured with asyncpg's query logger.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench.api_latency import percentile
from bench.api_process import BENCH_SECRET, api_process
from bench.stack import Stack
from store import directory_queries, trial_queries
from store.trial_queries import TrialFilter
from workers.settings import Settings

ORG, OTHER = "big", "big-other"
PEOPLE = 3000

DIRECTORY = f"""
INSERT INTO organisations (id, name, policy) VALUES ('{ORG}', 'Big', '{{}}');
INSERT INTO units (id, organisation_id, parent_id, name) VALUES ('big.top', '{ORG}', NULL, 'Top');
INSERT INTO units (id, organisation_id, parent_id, name)
  SELECT 'big.area' || a, '{ORG}', 'big.top', 'Area ' || a FROM generate_series(1, 6) a;
INSERT INTO units (id, organisation_id, parent_id, name)
  SELECT 'big.area' || a || '.team' || t, '{ORG}', 'big.area' || a, 'Team'
  FROM generate_series(1, 6) a, generate_series(1, 8) t;
INSERT INTO people (id, organisation_id, name, email, locale)
  SELECT 'big.p' || i, '{ORG}', 'Person ' || i, 'p' || i || '@big.example', 'da'
  FROM generate_series(1, {PEOPLE}) i;
INSERT INTO unit_leaders (unit_id, person_id)
  SELECT id, 'big.p' || row_number() over (order by id) FROM units WHERE organisation_id = '{ORG}';
INSERT INTO unit_members (unit_id, person_id)
  SELECT 'big.area' || (1 + i % 6) || '.team' || (1 + (i / 6) % 8), 'big.p' || i
  FROM generate_series(60, {PEOPLE}) i;
"""

# Trials numbered start..end, spread over the 48 teams, phases and a month of activity. The team
# follows i mod 48 and the phase i / 48, so every team has trials in every phase.
TRIALS = """
WITH g AS (
  SELECT i, gen_random_uuid() AS id,
         'big.area' || (1 + i % 6) || '.team' || (1 + (i / 6) % 8) AS unit,
         'big.p' || (60 + (i * 7919) % 2941) AS proposer,
         (ARRAY['proposed','running','running','running','adopted','adopted','abandoned',
                'evaluating','deciding','scheduled','paused','rejected'])[1 + ((i / 48) * 31) % 12]
           AS phase,
         now() - (i * interval '37 seconds') AS ts
  FROM generate_series($1::int, $2::int) i
), t AS (
  INSERT INTO trials (id, workflow_id, organisation_id, unit_id, proposer_id, title, phase,
                      iteration, stalled, escalation_level, last_seq, created_at,
                      last_activity_at, view, due_at, approved_by, evaluated_by)
  SELECT id, 'trial-' || id, 'big', unit, proposer, 'Forsøg med morgenhuddle nr. ' || i, phase, 1,
         phase = 'running' AND i % 10 = 0, CASE WHEN i % 33 = 0 THEN 1 ELSE 0 END, 5,
         ts - interval '10 days', ts, jsonb_build_object('trial_id', id, 'pad', repeat('x', 1500)),
         ts + interval '5 days', '{}', '{}'
  FROM g RETURNING id, unit_id, proposer_id, phase
), people AS (
  INSERT INTO trial_people (trial_id, person_id, role, phase)
  SELECT id, proposer_id, 'proposer', phase FROM t
  UNION ALL
  SELECT id, 'big.p' || (60 + (abs(hashtext(id::text)) + k) % 2941), 'participant', phase
  FROM t, generate_series(1, 2) k
  RETURNING 1
)
INSERT INTO trial_people (trial_id, person_id, role, phase, via)
SELECT t.id, l.person_id, 'approver', t.phase, 'leader'
FROM t JOIN unit_leaders l ON l.unit_id = t.unit_id
"""


class Recorder:
    """Collects (sql, args) of every statement a pool's connections run while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, record: Any) -> None:
        if self.on:
            self.statements.append((record.query, tuple(record.args or ())))


async def _codecs(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def timed(run: Callable[[], Awaitable[Any]], count: int) -> dict[str, float]:
    for _ in range(10):  # warm-up
        await run()
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
    }


async def measure(stack: Stack, scales: list[int], requests: int) -> dict[str, Any]:
    """Per scale, both requests through the API and as raw SQL; plus the HTTP floor: GET /healthz
    on the same API process, which touches no database, so no API read can be faster."""
    from api.auth import create_token

    async with stack.pool.acquire() as conn:
        await conn.execute(DIRECTORY)
    leader = await stack.pool.fetchval(
        "SELECT person_id FROM unit_leaders WHERE unit_id = 'big.area3.team4'"
    )
    settings = Settings(jwt_secret=BENCH_SECRET)
    headers = {"Authorization": f"Bearer {create_token(settings, leader, ORG)}"}
    recorder = Recorder()

    async def init(conn: asyncpg.Connection) -> None:
        await _codecs(conn)
        conn.add_query_logger(recorder)

    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2, init=init)
    raw = await asyncpg.connect(stack.database_url)
    await _codecs(raw)
    results: list[dict[str, Any]] = []
    floor: dict[str, float] = {}
    filled = 0
    try:
        async with (
            api_process(stack.database_url, stack.server.address, "bench-reads") as base,
            httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers, timeout=30) as http,
        ):

            async def healthz() -> None:
                assert (await http.get(f"{base}/healthz")).status_code == 200

            floor = await timed(healthz, requests)
            print(
                f"  HTTP floor (GET /healthz, no database): p50 {floor['p50_ms']} ms"
                f" p99 {floor['p99_ms']} ms",
                flush=True,
            )
            for scale in scales:
                await stack.pool.execute(TRIALS, filled + 1, scale)
                await stack.pool.execute("ANALYZE trials; ANALYZE trial_people")
                filled = scale

                async def api_list() -> None:
                    assert (await http.get("/trials", params={"limit": 20})).status_code == 200

                async def api_inbox() -> None:
                    assert (await http.get("/inbox")).status_code == 200

                async def queries_list() -> None:
                    await trial_queries.list_trials(pool, ORG, TrialFilter(), limit=20)

                async def queries_inbox() -> None:
                    now = datetime.now(UTC)
                    led = await directory_queries.units_led_by(pool, leader, now.date())
                    await trial_queries.inbox(pool, leader, ORG, led, now=now, today=now.date())

                row: dict[str, Any] = {"trials": scale}
                for name, api_call, queries in (
                    ("list", api_list, queries_list),
                    ("inbox", api_inbox, queries_inbox),
                ):
                    recorder.statements.clear()
                    recorder.on = True
                    await queries()
                    recorder.on = False
                    statements = [  # the queries themselves: not transaction control, nor
                        # the pool's reset script run when a connection goes back
                        (sql, args)
                        for sql, args in recorder.statements
                        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))
                        and ";" not in sql.strip().rstrip(";")
                    ]

                    async def replay(
                        statements: list[tuple[str, tuple[Any, ...]]] = statements,
                    ) -> None:
                        for sql, args in statements:
                            await raw.fetch(sql, *args)

                    api_figures = await timed(api_call, requests)
                    raw_figures = await timed(replay, requests)
                    row[name] = {
                        "api": api_figures,
                        "raw_sql": raw_figures,
                        "statements": len(statements),
                        "p99_ratio": round(api_figures["p99_ms"] / raw_figures["p99_ms"], 2),
                    }
                results.append(row)
                print(
                    f"  {scale:>7} trials: GET /trials p50 {row['list']['api']['p50_ms']} ms"
                    f" p99 {row['list']['api']['p99_ms']} ms (raw SQL p99"
                    f" {row['list']['raw_sql']['p99_ms']} ms); GET /inbox p50"
                    f" {row['inbox']['api']['p50_ms']} ms p99 {row['inbox']['api']['p99_ms']} ms"
                    f" (raw SQL p99 {row['inbox']['raw_sql']['p99_ms']} ms)",
                    flush=True,
                )
    finally:
        await raw.close()
        await pool.close()
    return {"http_floor": floor, "scales": results}
