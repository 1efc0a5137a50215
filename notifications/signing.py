"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>" with the subscription's secret.

Integrators may copy this file: it needs only the standard library. The receiver checks the
signature over the raw body bytes exactly as received (before parsing the JSON), and refuses a
timestamp older than the tolerance so a captured request cannot be replayed later.

    X-Provehandling-Timestamp: 1767225600
    X-Provehandling-Signature: sha256=5d6f...
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Provehandling-Signature"
TIMESTAMP_HEADER = "X-Provehandling-Timestamp"
EVENT_HEADER = "X-Provehandling-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300  # seconds


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The header value: "sha256=" and the hex HMAC-SHA256 of f"{timestamp}.{body}"."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    return "sha256=" + hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    timestamp: int | str,
    body: str | bytes,
    signature: str,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `signature` is ours for this body and the timestamp is within `tolerance`."""
    try:
        sent_at = int(str(timestamp))
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature.strip())
