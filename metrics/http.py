"""Prometheus on an ASGI app: the `/metrics` endpoint and request duration by route template.

The route label is the path template the router matched (`/api/v1/trials/{trial_id}`), never the
raw path, so trial ids do not become label values; a request no route matched is `unmatched`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics import domain

UNMATCHED = "unmatched"


def metrics_response(request: Request, registry: CollectorRegistry = REGISTRY) -> Response:
    """The registry in the exposition format the scraper asked for (text or OpenMetrics)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), media_type=content_type)


async def metrics_endpoint(request: Request) -> Response:
    return metrics_response(request)


def route_template(scope: Scope) -> str:
    """The template of the path the router matched, e.g. `/api/v1/trials/{trial_id}`.

    Built from the request path with each path parameter's value put back as `{name}`: the
    matched route's own `path` lacks the prefix of an included router in recent FastAPI, and a
    plain Starlette route (like /metrics) sets no `route` at all.
    """
    if scope.get("endpoint") is None and scope.get("route") is None:
        return UNMATCHED
    path = str(scope.get("path", ""))
    params: dict[str, Any] = scope.get("path_params") or {}
    if not params:
        return path
    names = {str(value): name for name, value in params.items()}
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in path.split("/"))


class HttpMetricsMiddleware:
    """Observes every HTTP request's duration with route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            domain.HTTP_REQUEST_SECONDS.labels(
                route_template(scope), scope.get("method", "GET"), str(status)
            ).observe(time.perf_counter() - started)


def mount_metrics(app: Starlette, path: str = "/metrics") -> None:
    """Serve the default registry at `path` (kept out of the OpenAPI schema)."""
    app.add_route(path, metrics_endpoint, methods=["GET"], include_in_schema=False)


def instrument_app(app: Starlette, path: str = "/metrics") -> None:
    """Both at once, for the API: call in create_app, before the app starts serving."""
    app.add_middleware(HttpMetricsMiddleware)
    mount_metrics(app, path)
