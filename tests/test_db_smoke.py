import asyncpg

from store.db import migrate


async def test_migrations_applied_once(pool: asyncpg.Pool, database_url: str) -> None:
    tables = {r["tablename"] for r in await pool.fetch("SELECT tablename FROM pg_tables")}
    assert {"trials", "trial_events", "notifications", "units", "people"} <= tables
    assert await migrate(database_url) == []
