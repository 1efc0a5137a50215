"""The API as its own process (`provehandling api`), as production runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.reliability.processes import free_port

BENCH_SECRET = "bench-secret-long-enough-for-hs256-signing"


@asynccontextmanager
async def api_process(
    database_url: str, temporal_address: str, task_queue: str
) -> AsyncIterator[str]:
    """Serve the API in a subprocess until the block ends; yields its base URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PROVE_")},
        "PROVE_DATABASE_URL": database_url,
        "PROVE_TEMPORAL_ADDRESS": temporal_address,
        "PROVE_TASK_QUEUE": task_queue,
        "PROVE_API_PORT": str(port),
        "PROVE_JWT_SECRET": BENCH_SECRET,
        "PROVE_LOG_LEVEL": "WARNING",
    }
    binary = Path(sys.executable).parent / "provehandling"
    process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [str(binary), "api"], env=env, stdin=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(200):
                try:
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise TimeoutError("the API never became ready")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
