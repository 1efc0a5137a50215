"""The `provehandling` command: worker, migrations, directory and the dev stack behind one name.

Subcommands are declared in COMMANDS, a tree of Command entries. Adding one (`api`, `token`,
`trials list|show`) is an async handler plus one Command entry; a group such as `trials` is a
Command with `subcommands`. Handlers raise CommandError for anything the user should fix (a
setting, a file, a busy port); run() turns it into a one-line message and an exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from workers.logging_setup import configure_logging
from workers.settings import Settings

PROG = "provehandling"
EXAMPLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/provehandling"

T = TypeVar("T")


class CommandError(Exception):
    """A problem the user fixes: printed as `provehandling: error: <message>`, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


@dataclass(frozen=True)
class Command:
    """One subcommand: a leaf runs `run`; a group (e.g. `directory`) holds `subcommands`."""

    name: str
    summary: str  # one line, shown in the parent's --help and as this command's description
    run: Handler | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    subcommands: tuple[Command, ...] = ()
    details: str | None = None  # more --help text under the summary


# --- helpers shared by the commands (and by workers.dev) ---------------------------------------


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, safe to print and log."""
    try:
        parts = urlsplit(url)
        if not parts.password:
            if parts.username is not None and "@" in parts.netloc:
                # `user:@host` (an empty password, as pgserver writes it): drop the colon.
                userinfo, _, hostinfo = parts.netloc.rpartition("@")
                netloc = f"{userinfo.rstrip(':')}@{hostinfo}"
                return urlunsplit(parts._replace(netloc=netloc))
            return url
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    except ValueError:
        return "<a URL that cannot be parsed>"


def _database_reason(exc: BaseException, timeout: float) -> str:
    import socket

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def check_database(url: str | None, *, wait_seconds: float = 10.0) -> str:
    """Connect once, so an unreachable or misnamed database is one clear line, not a traceback."""
    import asyncpg

    if not url:
        raise CommandError(
            f"PROVE_DATABASE_URL is not set; set it to a PostgreSQL URL such as"
            f" {EXAMPLE_DATABASE_URL}"
        )
    try:
        conn = await asyncpg.connect(url, timeout=wait_seconds)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = _database_reason(exc, wait_seconds)
        raise CommandError(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}"
            f" (PROVE_DATABASE_URL sets the database URL)"
        ) from None
    await conn.close()
    return url


def temporal_connect_problem(address: str, exc: BaseException) -> str:
    """The short reason inside the SDK's `Failed client connect: ...tonic...` text."""
    text = str(exc)
    match = re.search(r'message: "([^"]+)"', text) or re.search(r'ConnectError\("([^"]+)"', text)
    reason = match.group(1) if match else (text.splitlines() or [type(exc).__name__])[0][:200]
    return (
        f"cannot connect to Temporal at {address}: {reason}"
        f" (PROVE_TEMPORAL_ADDRESS sets the address)"
    )


async def _database_errors(url: str, work: Awaitable[T]) -> T:
    """Run `work`, turning a PostgreSQL error into a one-line CommandError naming the database."""
    import asyncpg

    try:
        return await work
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(f"database error on {redact_url(url)}: {exc}") from None


# --- the commands ------------------------------------------------------------------------------


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.worker import run_worker

    await check_database(settings.database_url)
    try:
        await run_worker(settings)
    except RuntimeError as exc:
        if "Failed client connect" in str(exc):
            raise CommandError(temporal_connect_problem(settings.temporal_address, exc)) from None
        raise
    return 0


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from store.db import migrate

    url = await check_database(settings.database_url)
    applied = await _database_errors(url, migrate(url))
    if applied:
        print(f"Applied to {redact_url(url)}: {', '.join(applied)}")
    else:
        print(f"{redact_url(url)} is up to date: no migrations to apply")
    return 0


def _directory_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="the directory YAML file")


async def _directory_load(args: argparse.Namespace, settings: Settings) -> int:
    from store.db import create_pool, migrate
    from store.directory import DirectoryError, load_directory, parse_directory_file

    path: Path = args.file
    # The file is checked before the database is touched: a bad file writes nothing at all.
    try:
        directory = parse_directory_file(path)
    except DirectoryError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file", exit_code=2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", exit_code=2) from None

    url = await check_database(settings.database_url)
    await _database_errors(url, migrate(url))  # so a load into a new database just works
    pool = await _database_errors(url, create_pool(url, max_size=2))
    try:
        report = await _database_errors(url, load_directory(pool, directory, source=str(path)))
    except DirectoryError as exc:  # ids that belong to another organisation in the database
        raise CommandError(str(exc), exit_code=2) from None
    finally:
        await pool.close()
    print(report.summary())
    return 0


async def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from workers.dev import DevStack

    return await DevStack(settings).run()


COMMANDS: tuple[Command, ...] = (
    Command(
        "worker",
        "Run the Temporal worker for trial workflows until stopped.",
        run=_worker,
        details="Needs PROVE_DATABASE_URL and a Temporal server at PROVE_TEMPORAL_ADDRESS."
        " SIGTERM or Ctrl-C finishes in-flight tasks, then exits.",
    ),
    Command(
        "migrate",
        "Apply pending database migrations to PROVE_DATABASE_URL.",
        run=_migrate,
    ),
    Command(
        "directory",
        "Manage the organisation directory.",
        subcommands=(
            Command(
                "load",
                "Check a directory YAML file and load it into the database.",
                run=_directory_load,
                arguments=_directory_load_arguments,
                details="The file is authoritative for the organisations it names. A file with"
                " any problem is refused whole (exit code 2) and nothing is written. Migrations"
                " are applied first, so this works on a new database.",
            ),
        ),
    ),
    Command(
        "dev",
        "Run Temporal, PostgreSQL and the worker locally (development).",
        run=_dev,
        details="State lives under PROVE_DATA_DIR (default .data): the Temporal dev server's"
        " database file and, unless PROVE_DATABASE_URL is set, an embedded PostgreSQL. The demo"
        " directory is loaded into an empty database. Ctrl-C or SIGTERM stops everything; the"
        " next start resumes where it stopped.",
    ),
)


# --- parsing and running -----------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("provehandling")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_WrappedDescription,
        description="Prøvehandlinger (trial actions) as Temporal workflows.",
        epilog="Settings come from environment variables prefixed PROVE_ (for example"
        " PROVE_DATABASE_URL, PROVE_TEMPORAL_ADDRESS) or from a .env file."
        f" Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_subcommands(parser, commands, dest="command")
    return parser


def _add_subcommands(
    parser: argparse.ArgumentParser, commands: Sequence[Command], dest: str
) -> None:
    sub = parser.add_subparsers(dest=dest, metavar="COMMAND", title="commands", required=True)
    for command in commands:
        description = command.summary + (f"\n\n{command.details}" if command.details else "")
        child = sub.add_parser(
            command.name,
            help=command.summary,
            description=description,
            formatter_class=_WrappedDescription,
        )
        if command.arguments is not None:
            command.arguments(child)
        if command.subcommands:
            _add_subcommands(child, command.subcommands, dest=f"{dest}_{command.name}")
        else:
            assert command.run is not None, f"command {command.name!r} has nothing to run"
            child.set_defaults(handler=command.run)


class _WrappedDescription(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own (argparse joins them by default), and
    leaves room for command names so each summary starts on the name's line."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size().columns, 100)
        super().__init__(prog, max_help_position=30, width=width)
        # argparse measures subcommand names at a smaller indent than it prints them at, so a
        # name as long as `directory` would otherwise get its summary on the next line.
        self._action_max_length = 16

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            super(_WrappedDescription, self)._fill_text(paragraph, width, indent)
            for paragraph in text.split("\n\n")
        )


def _settings_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = "PROVE_" + "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{name}: {error['msg']}")
    return "invalid setting " + "; ".join(problems)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen command and return its exit code (for tests and embedding)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        settings = Settings()
    except ValidationError as exc:
        _error(_settings_problem(exc))
        return 1
    configure_logging(settings.log_level)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args, settings))
    except CommandError as exc:
        _error(str(exc))
        return exc.exit_code
    except SystemExit as exc:  # e.g. run_worker's "PROVE_DATABASE_URL is not set"
        if isinstance(exc.code, str):
            _error(exc.code)
            return 1
        return 0 if exc.code is None else exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def main() -> NoReturn:
    """Console-script entry point.

    Ends with os._exit: a Temporal client still alive at interpreter exit can crash it
    (sdk-python #300), and every command has released what it holds by the time run() returns.
    """
    try:
        code = run()
    except BaseException:  # a bug: show it, still exit without the interpreter teardown
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`provehandling ... | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
