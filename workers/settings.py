"""Settings from the environment (prefix PROVE_), so one image runs anywhere."""

from __future__ import annotations

from pathlib import Path

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
    jwt_secret: str = "dev-secret-change-me-in-production-please"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_url: str | None = None
    log_level: str = "INFO"


def get_settings() -> Settings:
    return Settings()
