"""`provehandling dev` as a real subprocess: it comes up, stops cleanly on SIGTERM, and resumes.

Each test uses its own data directory, database and free ports, so it clashes neither with a dev
stack the developer has running nor with other tests. The stack starts its own Temporal server, so
these tests do not depend on --server and run once, in the default pass.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import psutil  # comes with pgserver
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.helpers import free_port, fresh_database

SCRIPT = Path(sys.executable).parent / "provehandling"
BANNER_END = "Ctrl-C stops everything."
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _default_pass_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--server") != "time-skipping":
        pytest.skip("starts its own Temporal server; runs in the default pass")


def two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def dev_env(data_dir: Path, frontend: int, ui: int, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVE_")}
    env.update(
        PROVE_DATA_DIR=str(data_dir),
        PROVE_TEMPORAL_ADDRESS=f"127.0.0.1:{frontend}",
        PROVE_TEMPORAL_UI_PORT=str(ui),
        PROVE_API_PORT=str(free_port()),
        PROVE_SMTP_PORT=str(free_port()),
        PROVE_METRICS_PORT=str(free_port()),
        PROVE_SDK_METRICS_PORT=str(free_port()),
    )
    if database_url is not None:
        env["PROVE_DATABASE_URL"] = database_url
    return env


DEMO_PROPOSAL = {
    "title": "Morgenhuddle på ti minutter",
    "problem": "Vagtskiftet tager for lang tid",
    "change": "Stående huddle kl. 7.45",
    "question": "Bliver overleveringen kortere?",
    "prediction": "Fra 25 til 15 minutter",
    "success_criteria": "Under 15 minutter",
    "participants": ["mads.kristensen"],
    "unit_id": "hjemmeplejen-nord",
    "planned_start": "2099-01-05",
    "planned_duration": "6 weeks",
}


def _mail_to(folder: Path, recipient: str) -> EmailMessage | None:
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if recipient in str(message["To"]) and isinstance(message, EmailMessage):
            return message
    return None


async def wait_for_mail(folder: Path, recipient: str, seconds: float = 30) -> EmailMessage:
    """The first .eml in `folder` addressed to `recipient`, once the dispatcher has sent it."""
    for _ in range(int(seconds * 4)):
        found = await asyncio.to_thread(_mail_to, folder, recipient)
        if found is not None:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"no mail to {recipient} in {folder}")


def banner_tokens(banner: list[str]) -> dict[str, str]:
    """The `export NAME=token` lines of the banner."""
    found = {}
    for line in banner:
        words = line.split()
        if len(words) >= 2 and words[0] == "export" and "=" in words[1]:
            name, _, token = words[1].partition("=")
            found[name] = token
    assert {"EMPLOYEE", "LEADER"} <= set(found), banner
    return found


@pytest.fixture
async def dev_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new, empty database for one dev stack (the stack migrates it and loads the demo)."""
    async with fresh_database(admin_dsn, "prove_dev") as dsn:
        yield dsn


@contextmanager
def log_file(path: Path) -> Iterator[IO[bytes]]:
    with path.open("ab") as handle:
        yield handle


@dataclass
class DevRun:
    process: asyncio.subprocess.Process
    log: Path
    banner: list[str] = field(default_factory=list)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def temporal_pids(self) -> list[int]:
        children = psutil.Process(self.process.pid).children(recursive=True)
        return [child.pid for child in children if child.name() == "temporal"]

    async def stop(self) -> int:
        """SIGTERM, as a service manager or `docker stop` sends it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            pytest.fail(f"dev did not stop within {STOP_TIMEOUT:g} s:\n{self.stderr()}")


async def start_dev(env: dict[str, str], cwd: Path, log: Path) -> DevRun:
    """Start `provehandling dev` and return once its banner is out (everything is up)."""
    with log_file(log) as stderr:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "dev",
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    run = DevRun(process, log)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while not run.banner or run.banner[-1] != BANNER_END:
                line = await process.stdout.readline()
                if not line:
                    await process.wait()
                    pytest.fail(f"dev exited ({process.returncode}) before ready:\n{run.stderr()}")
                run.banner.append(line.decode().rstrip("\n"))
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"dev was not ready within {READY_TIMEOUT:g} s:\n{run.stderr()}")
    return run


@pytest.fixture
async def runs() -> AsyncIterator[list[DevRun]]:
    """Every dev stack a test starts is killed at the end, whatever the test did."""
    started: list[DevRun] = []
    yield started
    for run in started:
        if run.process.returncode is None:
            run.process.kill()
            await run.process.wait()


async def worker_polls(client: Client, task_queue: str) -> bool:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(response.pollers)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie left for an init that does not reap (containers)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_dev_stack_starts_stops_on_sigterm_and_resumes(
    dev_database: str, tmp_path: Path, runs: list[DevRun]
) -> None:
    frontend, ui = two_free_ports()
    data_dir = tmp_path / "data"
    env = dev_env(data_dir, frontend, ui, dev_database)

    # First start: a new data dir and an empty database.
    first = await start_dev(env, tmp_path, tmp_path / "first.log")
    runs.append(first)
    banner = "\n".join(first.banner)
    assert f"http://127.0.0.1:{ui}" in banner
    assert f"127.0.0.1:{frontend}" in banner
    assert str(data_dir) in banner
    assert dev_database.rpartition("/")[2] in banner

    db = await asyncpg.connect(dev_database)
    try:
        orgs = {r["id"] for r in await db.fetch("SELECT id FROM organisations")}
    finally:
        await db.close()
    assert orgs == {"aarhus", "region-midt"}  # the demo directory, loaded into the empty database

    client = await Client.connect(f"127.0.0.1:{frontend}")
    attributes = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {"TrialPhase", "TrialOrganisation", "TrialUnit", "TrialEscalationLevel"} <= set(
        attributes.custom_attributes
    )
    assert await worker_polls(client, "provehandling")  # the banner waits for the worker

    # The API answers, and the banner's tokens work: the employee proposes a trial.
    api = f"http://127.0.0.1:{env['PROVE_API_PORT']}"
    tokens = banner_tokens(first.banner)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        proposed = await http.post(
            "/api/v1/trials",
            headers={"Authorization": f"Bearer {tokens['EMPLOYEE']}"},
            json=DEMO_PROPOSAL,
        )
        assert proposed.status_code == 201, proposed.text
        trial_id = proposed.json()["trial_id"]
    # The leader's mail reaches the stack's own SMTP server, in Danish, and is kept as .eml.
    mail = await wait_for_mail(data_dir / "mail", "anne.holm@aarhus.example")
    assert mail["Subject"] == "Godkend prøvehandlingen «Morgenhuddle på ti minutter»"
    assert "mail to anne.holm@aarhus.example" in first.stderr()
    # A workflow nobody serves: it must still be there after a restart.
    probe = await client.start_workflow(
        "PersistenceProbe", id=f"probe-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls"
    )

    temporal = first.temporal_pids()
    assert len(temporal) == 1

    # A second stack on the same data dir (on other ports) would share the Temporal state file.
    other_ports = two_free_ports()
    intruder = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "dev",
        env=dev_env(data_dir, *other_ports, dev_database),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(intruder.communicate(), 30)
    assert intruder.returncode == 1
    assert err.decode() == (
        f"provehandling: error: another `provehandling dev` (pid {first.process.pid}) is using"
        f" {data_dir}; stop it or set PROVE_DATA_DIR\n"
    )

    code = await first.stop()

    assert code == 0, first.stderr()
    assert gone(temporal[0]), "the Temporal dev server outlived dev"
    assert not port_answers(frontend)
    assert (data_dir / "temporal.db").is_file()
    assert "everything stopped" in first.stderr()
    assert "Traceback" not in first.stderr()

    # Second start on the same data dir and database: the same state comes back.
    second = await start_dev(env, tmp_path, tmp_path / "second.log")
    runs.append(second)
    assert "demo not loaded" in second.stderr()
    client = await Client.connect(f"127.0.0.1:{frontend}")
    description = await client.get_workflow_handle(probe.id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert await worker_polls(client, "provehandling")
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:  # the first run's trial
        listed = await http.get(
            "/api/v1/trials", headers={"Authorization": f"Bearer {tokens['LEADER']}"}
        )
        assert listed.status_code == 200
        assert trial_id in [item["trial_id"] for item in listed.json()["items"]]
        approved = await http.post(
            f"/api/v1/trials/{trial_id}/approvals",
            headers={"Authorization": f"Bearer {tokens['LEADER']}"},
            json={"decision": "approve"},
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["phase"] == "scheduled"

    temporal = second.temporal_pids()
    assert await second.stop() == 0, second.stderr()
    assert temporal and gone(temporal[0])


async def test_dev_stack_with_embedded_postgres(tmp_path: Path, runs: list[DevRun]) -> None:
    frontend, ui = two_free_ports()
    data_dir = tmp_path / "data"
    env = dev_env(data_dir, frontend, ui, database_url=None)

    run = await start_dev(env, tmp_path, tmp_path / "dev.log")
    runs.append(run)

    database_line = next(line for line in run.banner if line.strip().startswith("Database"))
    assert "(embedded)" in database_line
    postmaster = data_dir / "postgres" / "postmaster.pid"
    assert postmaster.is_file()
    postgres_pid = int(postmaster.read_text().splitlines()[0])
    assert "loaded the demo directory: aarhus, region-midt" in run.stderr()

    assert await run.stop() == 0, run.stderr()
    assert gone(postgres_pid), "the embedded PostgreSQL outlived dev"
    assert not postmaster.exists()


@pytest.mark.parametrize(
    ("busy", "role", "setting"),
    [
        ("frontend", "Temporal frontend", "PROVE_TEMPORAL_ADDRESS"),
        ("ui", "Temporal UI", "PROVE_TEMPORAL_UI_PORT"),
    ],
)
async def test_busy_port_is_one_clear_line_and_exit_1(
    tmp_path: Path, busy: str, role: str, setting: str
) -> None:
    frontend, ui = two_free_ports()
    port = frontend if busy == "frontend" else ui
    data_dir = tmp_path / "data"
    # Nothing must be touched before the ports are checked: this database does not even exist.
    env = dev_env(data_dir, frontend, ui, "postgresql://postgres@127.0.0.1:9/none")

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "dev",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    assert err.decode() == (
        f"provehandling: error: port {port} is already in use ({role});"
        f" stop whatever uses it or set {setting}\n"
    )
    assert out == b""
    assert not data_dir.exists()
