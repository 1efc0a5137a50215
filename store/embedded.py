"""An embedded PostgreSQL (PyPI pgserver) for machines with no server configured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


def start_embedded_postgres(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) a PostgreSQL whose files live in data_dir; returns (server, dsn)."""
    import pgserver  # imported late: only needed where no server is configured

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server, server.get_uri()


async def server_answers(dsn: str, wait_seconds: float = 2.0) -> bool:
    """True when a PostgreSQL server accepts a connection at dsn."""
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), wait_seconds)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True
