"""The targets the benchmarks are judged against (issue: speed against bare Temporal).

One place, so what `python -m bench` prints and what the README says cannot disagree.
"""

LIFECYCLE_RATIO = 0.8  # our lifecycles/s over the bare Temporal baseline's, at least
APPROVAL_P95_MS = 150.0  # an approval's round trip through the API, p95 under
READ_P99_MS = 20.0  # GET /trials and GET /inbox at 100,000 trials, p99 under
READ_RAW_RATIO = 1.5  # ... and under this many times the same SQL through raw asyncpg
WORKER_MEMORY_MB = 300.0  # worker RSS with 5,000 open trials, under
