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


async def database_errors(url: str, work: Awaitable[T]) -> T:
    """Run `work`, turning a PostgreSQL error into a one-line CommandError naming the database."""
    import asyncpg

    try:
        return await work
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(f"database error on {redact_url(url)}: {exc}") from None


async def mint_tokens(
    settings: Settings,
    url: str,
    person_ids: Sequence[str],
    hours: float,
    *,
    skip_unknown: bool = False,
) -> dict[str, str]:
    """Signed API tokens for people in the directory at `url`, from one small pool.

    A person not in the directory is a CommandError (exit 2), or left out with `skip_unknown`.
    """
    from datetime import timedelta

    from api.auth import token_for_person
    from store.db import create_pool

    pool = await database_errors(url, create_pool(url, min_size=0, max_size=1))
    tokens: dict[str, str] = {}
    try:
        for person_id in person_ids:
            try:
                tokens[person_id] = await token_for_person(
                    pool, settings, person_id, timedelta(hours=hours)
                )
            except LookupError as exc:
                if not skip_unknown:
                    raise CommandError(str(exc), exit_code=2) from None
    finally:
        await pool.close()
    return tokens


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
    applied = await database_errors(url, migrate(url))
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
    await database_errors(url, migrate(url))  # so a load into a new database just works
    pool = await database_errors(url, create_pool(url, max_size=2))
    try:
        report = await database_errors(url, load_directory(pool, directory, source=str(path)))
    except DirectoryError as exc:  # ids that belong to another organisation in the database
        raise CommandError(str(exc), exit_code=2) from None
    finally:
        await pool.close()
    print(report.summary())
    return 0


async def _api(args: argparse.Namespace, settings: Settings) -> int:
    from api.server import serve

    await check_database(settings.database_url)
    await serve(settings)
    return 0


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("person", metavar="PERSON_ID", help="a person in the directory")
    parser.add_argument(
        "--hours", type=float, default=8.0, help="how long the token is valid (default 8)"
    )


async def _mint_token(settings: Settings, person_id: str, hours: float) -> str:
    url = await check_database(settings.database_url)
    tokens = await mint_tokens(settings, url, [person_id], hours)
    return tokens[person_id]


async def _token(args: argparse.Namespace, settings: Settings) -> int:
    print(await _mint_token(settings, args.person, args.hours))
    return 0


def _trials_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as",
        dest="as_person",
        metavar="PERSON_ID",
        help="act as this person with a token signed by PROVE_JWT_SECRET (development)",
    )
    parser.add_argument("--token", help="bearer token (default: PROVE_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _trials_list_arguments(parser: argparse.ArgumentParser) -> None:
    _trials_common(parser)
    parser.add_argument("--phase", action="append", help="only this phase (repeatable)")
    parser.add_argument("--unit", help="only this unit and its sub-units")
    parser.add_argument("--proposer", help="only trials proposed by this person")
    parser.add_argument("--stalled", action="store_true", help="only stalled trials")
    parser.add_argument("--escalated", action="store_true", help="only escalated trials")
    parser.add_argument("--q", help="text in the title")
    parser.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")


def _trials_show_arguments(parser: argparse.ArgumentParser) -> None:
    _trials_common(parser)
    parser.add_argument("trial", metavar="TRIAL_ID", help="the trial's id")


async def _api_get(
    args: argparse.Namespace, settings: Settings, path: str, params: dict[str, Any]
) -> Any:
    """GET from the API as the chosen caller; HTTP errors become one-line messages."""
    import httpx

    token = args.token or settings.token
    if args.as_person:
        token = await _mint_token(settings, args.as_person, 1.0)
    if not token:
        raise CommandError("no token: pass --token, set PROVE_TOKEN, or use --as PERSON_ID")
    url = settings.api_url.rstrip("/") + "/api/v1" + path
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            response = await http.get(
                url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as exc:
        raise CommandError(
            f"cannot reach the API at {settings.api_url}: {exc} (PROVE_API_URL sets it)"
        ) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise CommandError(f"{response.status_code}: {detail}")
    return response.json()


async def _trials_list(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("phase", "unit", "proposer", "q"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    for flag in ("stalled", "escalated"):
        if getattr(args, flag):
            params[flag] = "true"
    page = await _api_get(args, settings, "/trials", params)
    if args.json:
        import json

        print(json.dumps(page, indent=2, ensure_ascii=False))
        return 0
    items = page.get("items", [])
    print(f"{'TRIAL':36}  {'PHASE':17}  {'UNIT':28}  {'LAST ACTIVITY':16}  TITLE")
    for item in items:
        flags = (" (stalled)" if item.get("stalled") else "") + (
            f" (escalated {item['escalation_level']})" if item.get("escalation_level") else ""
        )
        print(
            f"{item['trial_id']:36}  {item['phase']:17}  {item['unit_id'][:28]:28}"
            f"  {str(item.get('last_activity_at', ''))[:16]:16}  {item['title']}{flags}"
        )
    if not items:
        print("(no trials)")
    elif page.get("next_cursor"):
        print("... more: narrow the filters or raise --limit")
    return 0


async def _trials_show(args: argparse.Namespace, settings: Settings) -> int:
    view = await _api_get(args, settings, f"/trials/{args.trial}", {})
    if args.json:
        import json

        print(json.dumps(view, indent=2, ensure_ascii=False))
        return 0
    proposal = view["proposal"]
    deadlines = {k: v for k, v in view.get("deadlines", {}).items() if v}
    lines = [
        f"{proposal['title']}  [{view['phase']}, iteration {view['iteration']}]",
        f"trial       {view['trial_id']}",
        f"unit        {view['unit_id']}",
        f"proposer    {view['proposer_id']}",
        f"participants {', '.join(proposal.get('participants', [])) or '-'}",
        f"approvals   {len(view.get('approvals', []))} of {view.get('required_approvals')}",
        f"check-ins   {view.get('check_ins', 0)}" + ("  (stalled)" if view.get("stalled") else ""),
    ]
    lines += [f"{name:11} {when}" for name, when in deadlines.items()]
    levels = {step: c["level"] for step, c in view.get("clocks", {}).items() if c.get("level")}
    if levels:
        lines.append("escalated   " + ", ".join(f"{s} level {n}" for s, n in levels.items()))
    print("\n".join(lines))
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
        "api",
        "Serve the HTTP API (PROVE_API_HOST:PROVE_API_PORT) until stopped.",
        run=_api,
        details="Needs PROVE_DATABASE_URL (migrated) and Temporal at PROVE_TEMPORAL_ADDRESS."
        " OpenAPI at /openapi.json and /docs.",
    ),
    Command(
        "token",
        "Print a bearer token for a person, signed with PROVE_JWT_SECRET (development).",
        run=_token,
        arguments=_token_arguments,
        details="The person's organisation comes from the directory in PROVE_DATABASE_URL.",
    ),
    Command(
        "trials",
        "List and show trials through the API.",
        subcommands=(
            Command(
                "list",
                "List trials, most recent activity first.",
                run=_trials_list,
                arguments=_trials_list_arguments,
            ),
            Command(
                "show",
                "Show one trial.",
                run=_trials_show,
                arguments=_trials_show_arguments,
            ),
        ),
        details="Calls the API at PROVE_API_URL with --token, PROVE_TOKEN, or --as PERSON_ID.",
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
    configure_logging(settings.log_level, settings.log_format)
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
