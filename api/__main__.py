"""`python -m api`: serve the API with settings from the environment (PROVE_*)."""

from __future__ import annotations

import asyncio
import logging

from api.server import serve
from workers.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
