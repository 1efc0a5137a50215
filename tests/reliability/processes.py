"""Real processes for fault tests: a Temporal dev server with a database file, worker processes,
and a TCP proxy in front of PostgreSQL that can refuse connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.helpers import free_port
from workers.dev import TemporalDevServer
from workers.settings import Settings


class DevServer:
    """`temporal server start-dev` whose state survives kill -9 in <folder>/temporal.db."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.ui_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server: TemporalDevServer | None = None

    async def start(self) -> None:
        settings = Settings(temporal_address=self.address, temporal_ui_port=self.ui_port)
        self._server = TemporalDevServer(settings, self.folder)
        await self._server.start()

    async def kill(self) -> None:
        """kill -9: no shutdown, whatever was in flight is cut off."""
        assert self._server is not None and self._server.process is not None
        self._server.kill()
        await self._server.process.wait()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=pydantic_data_converter)


class WorkerProcess:
    """`provehandling worker` as its own process, as production runs it."""

    def __init__(self, address: str, database_url: str, task_queue: str) -> None:
        self.env = {
            **os.environ,
            "PROVE_TEMPORAL_ADDRESS": address,
            "PROVE_DATABASE_URL": database_url,
            "PROVE_TASK_QUEUE": task_queue,
            # several workers share this machine: no fixed ops ports, no dispatcher
            "PROVE_METRICS_PORT": "0",
            "PROVE_SDK_METRICS_PORT": "0",
            "PROVE_DISPATCHER_ENABLED": "false",
        }
        self.task_queue = task_queue
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = Path(sys.executable).parent / "provehandling"
        self.process = subprocess.Popen(
            [str(binary), "worker"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """kill -9 in the middle of whatever it is doing."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


async def pollers(client: Client, task_queue: str) -> set[str]:
    """Identities of the workers polling the workflow task queue right now."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {p.identity for p in answer.pollers}


async def wait_polling(client: Client, worker: WorkerProcess, seconds: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if any(
            identity.startswith(f"{worker.pid}@")
            for identity in await pollers(client, worker.task_queue)
        ):
            return
        assert worker.process is not None and worker.process.poll() is None, "worker died"
        await asyncio.sleep(0.25)
    raise TimeoutError("worker never polled")


class FlakyProxy:
    """A TCP proxy to PostgreSQL; `refuse()` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def accept(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)
