"""Log lines on stderr for the CLI, the worker and the dev stack: readable text, or JSON lines.

Logs go to stderr so that stdout stays for what a command reports (a banner, a load summary) and can
be piped or read by tests without log noise.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"

# Libraries that are chatty at INFO about things an operator does not act on.
_QUIET = {"pgserver": logging.WARNING}


def configure_logging(level: str = "INFO", log_format: Literal["text", "json"] = "text") -> None:
    """One stderr handler on the root logger; an unknown level falls back to INFO, and says so.

    `json` writes one JSON object per line (see metrics.logging); `text` the readable lines above.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from metrics.logging import json_formatter

        handler.setFormatter(json_formatter())
    else:
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
