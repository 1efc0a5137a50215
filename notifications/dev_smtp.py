"""A local SMTP server for `make run` and the tests: every message is printed in short and kept.

Built on aiosmtpd's Controller (its own thread and event loop), so a slow disk never blocks the
worker. Each message is saved as `<folder>/<timestamp>-<n>.eml`, openable in any mail program,
and kept in `messages` (parsed) for tests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("provehandling.mail")


class _Handler:
    def __init__(self, server: DevMailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8")
        self.server._received(raw, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class DevMailServer:
    """An SMTP server on host:port that accepts everything and writes it to `folder`."""

    def __init__(self, host: str, port: int, folder: Path) -> None:
        self.host = host
        self.port = port
        self.folder = Path(folder)
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    async def start(self) -> None:
        """Listen; returns once the server answers (raises OSError when the port is taken)."""
        if self._controller is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            data_size_limit=25 * 1024 * 1024,
        )
        await asyncio.to_thread(controller.start)
        self._controller = controller
        log.info(
            "local mail server listening on %s:%d, saving to %s", self.host, self.port, self.folder
        )

    async def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)

    def _received(self, raw: bytes, recipients: list[str]) -> None:
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            n = next(self._counter)
            self.messages.append(parsed)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{n}.eml"
        path.write_bytes(raw)
        log.info("mail to %s: %s (%s)", ", ".join(recipients), parsed["Subject"], path.name)

    def by_message_id(self) -> dict[str, int]:
        """How many times each Message-ID arrived (a duplicate shows as more than 1)."""
        counts: dict[str, int] = {}
        with self._lock:
            for message in self.messages:
                key = str(message["Message-ID"])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    async def __aenter__(self) -> DevMailServer:
        await self.start()
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.stop()
