"""Observability of the service: Prometheus metrics, health endpoints and JSON logs.

`metrics.domain` holds every metric the service exports itself; the Temporal SDK's own metrics come
from the Core runtime's exporter (`metrics.sdk`). Nothing here imports the worker or the API, so
both (and the tests) wire it in without cycles.
"""
