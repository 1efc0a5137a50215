"""Plain, readable log lines on stderr for the CLI and the dev stack.

Logs go to stderr so that stdout stays for what a command reports (a banner, a load summary) and can
be piped or read by tests without log noise.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"

# Libraries that are chatty at INFO about things an operator does not act on.
_QUIET = {"pgserver": logging.WARNING}


def configure_logging(level: str = "INFO") -> None:
    """One stderr handler on the root logger; an unknown level falls back to INFO, and says so."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.strip().upper())
    if isinstance(numeric, int):
        root.setLevel(numeric)
    else:
        root.setLevel(logging.INFO)
        logging.getLogger("provehandling").warning(
            "unknown log level %r (PROVE_LOG_LEVEL); using INFO", level
        )
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet_level, root.level))
