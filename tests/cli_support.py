"""Running the `provehandling` console script as a real subprocess, for the CLI tests."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "provehandling"
CLI_TIMEOUT = 60.0


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli_env(**settings: str) -> dict[str, str]:
    """This environment without any PROVE_ setting of the developer's, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVE_")}
    env.update(settings)
    return env


async def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> Result:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        env=dict(env),
        cwd=cwd,  # away from the project's .env
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())
