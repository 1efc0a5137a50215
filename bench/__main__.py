"""`python -m bench [--quick]`: run the benchmarks, print the figures, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import api_latency, lifecycles, memory, read_queries, targets
from bench.stack import Stack, open_stack

RESULTS = Path(__file__).parent / "results.json"
QUICK = Path(__file__).parent / "results-quick.json"  # a short run (--quick), never committed
PARTIAL = Path(__file__).parent / "results-partial.json"  # a run of some benchmarks (--only)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


PARTS = ("lifecycles", "approval", "reads", "memory")


async def run(quick: bool, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "machine": machine(),
    }
    async with AsyncExitStack() as stack_scope:
        stack = await open_stack(stack_scope)
        if "lifecycles" in parts:
            await _lifecycles(stack, quick, results)
        if "approval" in parts:
            await _approval(stack, quick, results)
        if "reads" in parts:
            await _reads(stack, quick, results)
        if "memory" in parts:
            await _memory(stack, quick, results)
    return results


async def _lifecycles(stack: Stack, quick: bool, results: dict[str, Any]) -> None:
    figures = await lifecycles.measure(
        stack,
        total=10 if quick else 60,
        concurrency=10 if quick else 20,
        rounds=1 if quick else 2,
    )
    results["lifecycles"] = figures
    print(
        f"lifecycles/s with one worker: ours {figures['ours_per_second']}, bare Temporal"
        f" {figures['baseline_per_second']}, ratio {figures['ratio']}"
        f" (target >= {targets.LIFECYCLE_RATIO:g})",
        flush=True,
    )


async def _approval(stack: Stack, quick: bool, results: dict[str, Any]) -> None:
    latency = await api_latency.measure(stack, approvals=20 if quick else 100)
    results["approval_round_trip"] = latency
    print(
        f"approval through the API, request to new view: p50 {latency['p50_ms']} ms,"
        f" p95 {latency['p95_ms']} ms over {latency['approvals']}"
        f" (target p95 < {targets.APPROVAL_P95_MS:g} ms)",
        flush=True,
    )


async def _reads(stack: Stack, quick: bool, results: dict[str, Any]) -> None:
    print("GET /trials and GET /inbox beside the same SQL through raw asyncpg:", flush=True)
    results["read_queries"] = await read_queries.measure(
        stack,
        scales=[1_000, 10_000] if quick else [1_000, 10_000, 100_000],
        requests=50 if quick else 300,
    )
    print(
        f"  (targets: p99 < {targets.READ_P99_MS:g} ms at 100,000 trials and"
        f" < {targets.READ_RAW_RATIO:g} x the raw query)",
        flush=True,
    )


async def _memory(stack: Stack, quick: bool, results: dict[str, Any]) -> None:
    mem = await memory.measure(stack, open_trials=200 if quick else 5000)
    results["worker_memory"] = mem
    print(
        f"worker memory with {mem['open_trials']} open trials: {mem['worker_rss_mb']} MB"
        f" (idle {mem['worker_rss_idle_mb']} MB;"
        f" target < {targets.WORKER_MEMORY_MB:g} MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run that keeps CI honest")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"default {RESULTS}; {QUICK} with --quick; {PARTIAL} with --only",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this benchmark (repeat for several); the results file then holds only it",
    )
    args = parser.parse_args()
    output: Path = args.output or (PARTIAL if args.only else QUICK if args.quick else RESULTS)
    results = asyncio.run(run(args.quick, tuple(args.only or PARTS)))
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {output}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
