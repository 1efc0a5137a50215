"""The `provehandling` console script, run as a real subprocess the way an operator runs it.

These tests start no Temporal server and do not depend on --server, so they run once, in the
default pass.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.cli_support import cli_env, run_cli
from tests.helpers import fresh_database

DEMO = Path(__file__).resolve().parents[1] / "workers" / "demo" / "directory.yaml"


@pytest.fixture(autouse=True)
def _default_pass_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--server") != "time-skipping":
        pytest.skip("independent of --server; runs in the default pass")


@pytest.fixture
async def new_database(admin_dsn: str) -> AsyncIterator[str]:
    """An empty database, not migrated: what an operator starts from."""
    async with fresh_database(admin_dsn, "prove_cli") as dsn:
        yield dsn


# --- help ----------------------------------------------------------------------------------------


async def test_help_lists_the_subcommands(tmp_path: Path) -> None:
    result = await run_cli("--help", env=cli_env(), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("usage: provehandling")
    for name in ("worker", "migrate", "directory", "dev"):
        assert f"    {name} " in result.stdout


@pytest.mark.parametrize(
    "command", [["worker"], ["migrate"], ["directory"], ["directory", "load"], ["dev"]]
)
async def test_each_subcommand_has_help(tmp_path: Path, command: list[str]) -> None:
    result = await run_cli(*command, "--help", env=cli_env(), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"usage: provehandling {' '.join(command)}")
    description = result.stdout.split("\n\n")[1]
    assert description.strip(), "each subcommand says what it does"


async def test_no_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cli(env=cli_env(), cwd=tmp_path)
    assert result.code == 2
    assert "required: COMMAND" in result.stderr


# --- migrate -------------------------------------------------------------------------------------


async def test_migrate_applies_once_then_says_up_to_date(new_database: str, tmp_path: Path) -> None:
    env = cli_env(PROVE_DATABASE_URL=new_database)

    first = await run_cli("migrate", env=env, cwd=tmp_path)
    second = await run_cli("migrate", env=env, cwd=tmp_path)

    assert first.code == 0, first.stderr
    assert "001_initial.sql" in first.stdout
    assert second.code == 0, second.stderr
    assert "up to date" in second.stdout


async def test_migrate_on_the_test_database_is_fine(database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        result = await run_cli(
            "migrate", env=cli_env(PROVE_DATABASE_URL=database_url), cwd=tmp_path
        )
        assert result.code == 0, result.stderr
        assert "up to date" in result.stdout


async def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    url = "postgresql://app:s3cret@127.0.0.1:9/provehandling"  # port 9: nothing listens
    result = await run_cli("migrate", env=cli_env(PROVE_DATABASE_URL=url), cwd=tmp_path)
    assert result.code == 1
    assert result.stderr == (
        "provehandling: error: cannot connect to PostgreSQL at"
        " postgresql://app:***@127.0.0.1:9/provehandling: connection refused"
        " (PROVE_DATABASE_URL sets the database URL)\n"
    )


async def test_missing_database_url_says_which_setting(tmp_path: Path) -> None:
    result = await run_cli("migrate", env=cli_env(), cwd=tmp_path)
    assert result.code == 1
    assert "PROVE_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


# --- directory load ------------------------------------------------------------------------------


def bad_directory(s: str) -> str:
    """Two organisations; the second one's unit names a parent that does not exist."""
    return f"""
organisations:
  - id: good-{s}
    name: God Kommune
    units:
      - id: good-top-{s}
        name: Direktionen
        leaders: [good-boss-{s}]
    people:
      - id: good-boss-{s}
        name: Bo Ravn
        email: good-boss-{s}@kom.example
  - id: bad-{s}
    name: Dårlig Kommune
    units:
      - id: bad-top-{s}
        name: Direktionen
      - id: bad-team-{s}
        name: Team
        parent: nowhere-{s}
    people: []
"""


async def test_bad_directory_file_exits_2_and_writes_nothing(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    s = uuid.uuid4().hex[:8]
    path = tmp_path / "directory.yaml"
    path.write_text(bad_directory(s), encoding="utf-8")

    result = await run_cli(
        "directory", "load", str(path), env=cli_env(PROVE_DATABASE_URL=database_url), cwd=tmp_path
    )

    assert result.code == 2
    assert "nothing was loaded" in result.stderr
    assert (
        f"organisations[1].units[1] (id 'bad-team-{s}'): parent 'nowhere-{s}' is not a unit of"
        f" organisation 'bad-{s}'"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    written = await pool.fetchval(
        "SELECT count(*) FROM organisations WHERE id = ANY($1::text[])", [f"good-{s}", f"bad-{s}"]
    )
    assert written == 0


async def test_missing_directory_file_exits_2(database_url: str, tmp_path: Path) -> None:
    result = await run_cli(
        "directory",
        "load",
        "no-such-file.yaml",
        env=cli_env(PROVE_DATABASE_URL=database_url),
        cwd=tmp_path,
    )
    assert result.code == 2
    assert result.stderr == "provehandling: error: no-such-file.yaml: no such file\n"


async def test_demo_directory_loads_and_a_second_load_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    env = cli_env(PROVE_DATABASE_URL=database_url)

    first = await run_cli("directory", "load", str(DEMO), env=env, cwd=tmp_path)
    second = await run_cli("directory", "load", str(DEMO), env=env, cwd=tmp_path)

    assert first.code == 0, first.stderr
    assert "Directory for aarhus, region-midt" in first.stdout  # other tests may have loaded it
    assert second.code == 0, second.stderr
    assert (
        second.stdout == "Directory for aarhus, region-midt: already up to date, nothing changed.\n"
    )


async def test_directory_load_into_a_new_database_migrates_first(
    new_database: str, tmp_path: Path
) -> None:
    result = await run_cli(
        "directory", "load", str(DEMO), env=cli_env(PROVE_DATABASE_URL=new_database), cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Directory for aarhus, region-midt loaded:"
    assert lines[2].split() == ["organisations", "2", "0", "0"]
