"""The wires: SMTP for e-mail, HTTPS POSTs for Teams (Power Automate) and signed webhooks.

A channel either delivers or raises DeliveryError, saying whether trying again can help. Error
texts never carry a webhook URL's query (Power Automate URLs hold their signature there) nor a
secret, because they are stored in `last_error` and shown by the API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiosmtplib
import httpx

from notifications.signing import (
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from workers.settings import Settings

USER_AGENT = "provehandling-notifications/1"


class DeliveryError(Exception):
    """A delivery attempt failed; `retryable` False means no later attempt can succeed."""

    def __init__(
        self, message: str, *, retryable: bool = True, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


def redact_url(url: str) -> str:
    """scheme://host/path, without query or credentials: safe to log and show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _redacted(text: str, url: str) -> str:
    return text.replace(url, redact_url(url))


class EmailChannel:
    """SMTP through aiosmtplib: one connection per message, STARTTLS and login as configured."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
        )

    async def send(self, message: EmailMessage) -> None:
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                start_tls=self.starttls,
                username=self.username,
                password=self.password,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = bool(codes) and all(code >= 500 for code in codes)
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise DeliveryError(
                f"SMTP refused the recipient: {detail}", retryable=not permanent
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP error {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(
                f"SMTP server {self.host}:{self.port} unavailable: {type(exc).__name__}: {exc}"
            ) from None
        if errors:
            detail = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in errors.items())
            raise DeliveryError(f"SMTP refused a recipient: {detail}")


class HttpPoster:
    """JSON POSTs over one shared httpx client; 2xx is delivered, anything else is retried."""

    def __init__(self, *, timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        try:
            response = await self.client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as exc:
            message = _redacted(f"{type(exc).__name__}: {exc}", url)
            raise DeliveryError(f"POST {redact_url(url)} failed: {message}") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        text = " ".join(response.text[:200].split())
        raise DeliveryError(
            f"POST {redact_url(url)} answered {response.status_code}"
            + (f": {_redacted(text, url)}" if text else ""),
            status_code=response.status_code,
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()


class TeamsChannel:
    """Adaptive Cards to a Power Automate 'When a Teams webhook request is received' flow."""

    def __init__(self, http: HttpPoster) -> None:
        self.http = http

    async def post_card(self, url: str, card: dict[str, Any]) -> int:
        return await self.http.post(url, json.dumps(card, ensure_ascii=False).encode(), {})


class WebhookChannel:
    """Signed POSTs of trial events to an organisation's integrations (see signing.py)."""

    def __init__(self, http: HttpPoster) -> None:
        self.http = http

    async def post_event(
        self,
        url: str,
        secret: str,
        body: bytes,
        *,
        event_kind: str,
        delivery_id: UUID,
        timestamp: int | None = None,
    ) -> int:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(secret, stamp, body),
            EVENT_HEADER: event_kind,
            IDEMPOTENCY_HEADER: str(delivery_id),
        }
        return await self.http.post(url, body, headers)


@dataclass
class Channels:
    """Everything the dispatcher sends through; built from settings, closed on shutdown."""

    email: EmailChannel
    teams: TeamsChannel
    webhooks: WebhookChannel
    http: HttpPoster

    @classmethod
    def from_settings(cls, settings: Settings) -> Channels:
        http = HttpPoster(timeout=settings.http_timeout_seconds)
        return cls(
            email=EmailChannel.from_settings(settings),
            teams=TeamsChannel(http),
            webhooks=WebhookChannel(http),
            http=http,
        )

    async def aclose(self) -> None:
        await self.http.aclose()
