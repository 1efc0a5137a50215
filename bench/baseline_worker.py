"""Runs the bare baseline workflow in its own process, as our worker runs in its own."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import BaselineLifecycle, noop


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    async with Worker(
        client, task_queue=task_queue, workflows=[BaselineLifecycle], activities=[noop]
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
