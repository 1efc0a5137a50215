"""The service's own Prometheus metrics, in one place, so dashboards and alerts have one source.

Conventions: names start with `provehandling_`, values are in base units (seconds), counters end in
`_total`, and labels carry only low-cardinality values (organisation, phase, step, rung, channel,
route template). Trial ids, person ids and free text never become labels.

Gauges derived from PostgreSQL (trials by phase, stalled, past SLA, outbox) are set by
`metrics.read_model_gauges.ReadModelGauges`; every replica exports the same numbers, so dashboards
aggregate them with `max`, not `sum`. Counters and histograms count what this process did, so they
are summed across replicas.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("provehandling.metrics")

PREFIX = "provehandling_"

# Workflow-scale durations: seconds for tests and quick decisions, up to 12 weeks for a slow one.
MINUTE, HOUR, DAY, WEEK = 60.0, 3600.0, 86400.0, 604800.0
WORKFLOW_DURATION_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    MINUTE,
    5 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    3 * DAY,
    5 * DAY,
    WEEK,
    2 * WEEK,
    3 * WEEK,
    4 * WEEK,
    6 * WEEK,
    8 * WEEK,
    12 * WEEK,
)
WORKING_DAY_BUCKETS: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 60)
HTTP_BUCKETS: tuple[float, ...] = (
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
)

# Known label values; anything else is folded into "other" so a bug cannot explode cardinality.
CHANNELS = ("email", "teams", "webhook")
OUTCOMES = ("sent", "retry", "failed")

# --- from the read model (set by ReadModelGauges) ---------------------------------------------

TRIALS = Gauge(
    "provehandling_trials",
    "Trials in the read model, by organisation and phase (same value on every replica).",
    ["organisation", "phase"],
)
STALLED_TRIALS = Gauge(
    "provehandling_stalled_trials",
    "Running trials with no check-in for the policy's stall_after, by organisation.",
    ["organisation"],
)
APPROVALS_PAST_SLA = Gauge(
    "provehandling_approvals_past_sla",
    "Trials still waiting for approval after their approval deadline, by organisation.",
    ["organisation"],
)
OUTBOX_PENDING = Gauge(
    "provehandling_outbox_pending",
    "Outbox rows not yet delivered (pending or being sent), by channel.",
    ["channel"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "provehandling_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered outbox row, by channel (0 when none is pending).",
    ["channel"],
)
READ_MODEL_REFRESHED = Gauge(
    "provehandling_read_model_gauges_refreshed_timestamp_seconds",
    "Unix time the read-model gauges were last refreshed; stale gauges show here.",
)
READ_MODEL_REFRESH_ERRORS = Counter(
    "provehandling_read_model_gauges_refresh_errors_total",
    "Refreshes of the read-model gauges that failed (the previous values stay).",
)

# --- counted where events are recorded (activities/trial_activities.py) -----------------------

PHASE_TRANSITIONS = Counter(
    "provehandling_phase_transitions_total",
    "Trials entering a phase, by organisation and the phase entered.",
    ["organisation", "phase"],
)
APPROVAL_SECONDS = Histogram(
    "provehandling_approval_duration_seconds",
    "Time from an iteration's proposal to its approval (quorum reached), in seconds.",
    ["organisation"],
    buckets=WORKFLOW_DURATION_BUCKETS,
)
APPROVAL_WORKING_DAYS = Histogram(
    "provehandling_approval_duration_working_days",
    "Time from an iteration's proposal to its approval, in the organisation's working days.",
    ["organisation"],
    buckets=WORKING_DAY_BUCKETS,
)
ESCALATIONS = Counter(
    "provehandling_escalations_total",
    "Escalations up the unit tree, by organisation, waiting step and rung (level).",
    ["organisation", "step", "level"],
)

# --- notifications (the dispatcher calls record_delivery) -------------------------------------

NOTIFICATIONS = Counter(
    "provehandling_notifications_total",
    "Delivery attempts by channel and outcome: sent, retry (failed, will retry), failed (gave up).",
    ["channel", "outcome"],
)

# --- HTTP (metrics.http.instrument_app) -------------------------------------------------------

HTTP_REQUEST_SECONDS = Histogram(
    "provehandling_http_request_duration_seconds",
    "API request duration by route template, method and status code.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)


def record_delivery(channel: str, outcome: str) -> None:
    """Count one delivery outcome; the dispatcher's DeliveryStats listener signature.

    Wire it with `dispatcher.stats.listeners.append(record_delivery)`.
    """
    NOTIFICATIONS.labels(
        channel if channel in CHANNELS else "other",
        outcome if outcome in OUTCOMES else "other",
    ).inc()


def exported_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every sample name the registry exposes, with _total/_bucket/_sum/_count/_created suffixes.

    Counters and histograms appear even before they have a labelled child, so the names can be
    checked against dashboards and alert rules in tests.
    """
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        elif family.type == "histogram":
            names.update(
                f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created")
            )
        elif family.type == "summary":
            names.update(f"{family.name}{suffix}" for suffix in ("_sum", "_count", "_created"))
        elif family.type == "info":
            names.add(f"{family.name}_info")
        names.update(sample.name for sample in family.samples)
    return names


def domain_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """The exported names that belong to the service itself (prefix provehandling_)."""
    return {name for name in exported_names(registry) if name.startswith(PREFIX)}


def reset_known_gauges(gauges: Iterable[Gauge]) -> None:
    """Drop every labelled child, so organisations or phases that disappeared stop exporting."""
    for gauge in gauges:
        gauge.clear()
