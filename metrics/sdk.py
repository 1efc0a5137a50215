"""The Temporal SDK's own metrics: a Core runtime with a Prometheus exporter of its own.

The SDK serves its metrics on a separate port (Core's exporter, not prometheus-client), named
`temporal_*` with `_total` counters and `_seconds` histograms. Bucket overrides make the
histograms useful for this service: workflow tasks and activities take milliseconds to seconds,
while a trial workflow runs for months.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from metrics.domain import DAY, HOUR, MINUTE, WEEK

# Seconds to a year: a trial's run lasts until it ends or continues as new (adapt, long history).
WORKFLOW_LIFETIME_BUCKETS: tuple[float, ...] = (
    1.0,
    MINUTE,
    HOUR,
    DAY,
    3 * DAY,
    WEEK,
    2 * WEEK,
    4 * WEEK,
    8 * WEEK,
    12 * WEEK,
    16 * WEEK,
    26 * WEEK,
    52 * WEEK,
)
# Workflow and activity tasks: a millisecond to a minute (a record_event may wait on PostgreSQL).
TASK_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# Queueing and retried activities: up to a day, so a backlog or a long retry still has a bucket.
QUEUE_BUCKETS: tuple[float, ...] = (*TASK_BUCKETS, 300.0, 900.0, HOUR, 6 * HOUR, DAY)

# Keys are Core's metric names without the `temporal_` prefix and without the unit suffix.
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    "workflow_endtoend_latency": WORKFLOW_LIFETIME_BUCKETS,
    "workflow_task_execution_latency": TASK_BUCKETS,
    "workflow_task_replay_latency": TASK_BUCKETS,
    "workflow_task_schedule_to_start_latency": QUEUE_BUCKETS,
    "activity_execution_latency": TASK_BUCKETS,
    "activity_schedule_to_start_latency": QUEUE_BUCKETS,
    "activity_succeed_endtoend_latency": QUEUE_BUCKETS,
    "request_latency": TASK_BUCKETS,
    "long_request_latency": TASK_BUCKETS,
}


def prometheus_config(bind_address: str) -> PrometheusConfig:
    """Prometheus naming conventions: `_total` counters, `_seconds` durations in seconds."""
    return PrometheusConfig(
        bind_address=bind_address,
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides=dict(HISTOGRAM_BUCKETS),
    )


def temporal_runtime(bind_address: str | None) -> Runtime:
    """A runtime exporting SDK metrics on `bind_address` ("0.0.0.0:9465"); None: the default.

    Pass it to `Client.connect(..., runtime=...)`; every worker on that client reports through it.
    Create one per process: each runtime with an address binds its own port.
    """
    if bind_address is None:
        return Runtime.default()
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus_config(bind_address)))
