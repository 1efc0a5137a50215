"""The HTTP API (FastAPI): trials, their commands, the inbox and health, under /api/v1."""
