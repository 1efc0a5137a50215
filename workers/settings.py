"""Settings from the environment (prefix PROVE_), so one image runs anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVE_", env_file=".env", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233  # the Web UI of the dev server `provehandling dev` starts
    task_queue: str = "provehandling"
    database_url: str | None = None
    data_dir: Path = Path(".data")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    api_url: str = "http://127.0.0.1:8000"  # where `provehandling trials` finds the API
    token: str | None = None  # bearer token for `provehandling trials` (or use --as PERSON)
    jwt_secret: str = "dev-secret-change-me-in-production-please"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_url: str | None = None
    # How long the API trusts a verified caller's directory entry before looking it up again
    # (0 = every request). Directory changes reach the API within this time.
    caller_cache_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line, for ops
    # Workflows kept in memory between tasks (at most 0.45 MB each: deploy/OPERATIONS.md). A trial
    # waits days between tasks, so a big cache buys little; an evicted one is replayed from history.
    max_cached_workflows: int = 250

    # Temporal Cloud or a cluster with mTLS / API keys.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: str | None = None

    # Ops: the worker's /metrics, /healthz, /readyz and the Temporal SDK's metrics (0 = off).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    sdk_metrics_port: int = 9465
    metrics_refresh_seconds: float = 15.0  # read-model gauges; Prometheus scrapes every 15-30 s

    # Notifications (notifications/): e-mail over SMTP, Teams and webhooks over HTTPS.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025  # `provehandling dev` runs a local SMTP server here
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "Prøvehandling <noreply@provehandling.local>"
    http_timeout_seconds: float = 10.0  # Teams and webhook POSTs
    teams_locale: str = "da"  # language of Teams cards (a channel has no locale of its own)
    dispatcher_enabled: bool = True  # the worker runs the outbox dispatcher
    dispatcher_poll_seconds: float = 5.0  # besides waking on NOTIFY provehandling_outbox
    dispatcher_max_attempts: int = 8
    dispatcher_backoff_seconds: float = 30.0  # first retry; doubles up to the maximum
    dispatcher_backoff_max_seconds: float = 3600.0
    dispatcher_lease_seconds: float = 120.0  # a crashed dispatcher's claim expires after this


def get_settings() -> Settings:
    return Settings()
