"""`python -m bench.readme [RESULTS]`: write a results file's figures into the README.

The README's benchmark section sits between two HTML comments and is rewritten whole from the
JSON that `make bench` wrote, so the figures there are always the ones a run printed, with the
command, the machine and whether each target was met.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

LIFECYCLE_RATIO_TARGET = 0.8
APPROVAL_P95_TARGET_MS = 150.0
READ_P99_TARGET_MS = 20.0
READ_RATIO_TARGET = 1.5
MEMORY_TARGET_MB = 300.0


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def render(results: dict[str, Any]) -> str:
    """The benchmark section, in Markdown, for one results file."""
    full = results["mode"] == "full"
    command = "make bench" if full else "make bench-quick"
    m = results["machine"]
    life = results["lifecycles"]
    approval = results["approval_round_trip"]
    reads = results["read_queries"]
    memory = results["worker_memory"]
    largest = reads["scales"][-1]
    lines = [
        f"Figures from `{command}` (`python -m bench{'' if full else ' --quick'}`), run"
        f" {results['when']} on {m['cpus']} cores, {m['memory_gb']} GB, Python {m['python']},"
        f" {m['platform']}, with the Temporal dev server, PostgreSQL and the worker on the same"
        f" machine; they are also in `bench/results{'' if full else '-quick'}.json`. Write them"
        " here with `python -m bench.readme`.",
        "",
        "| what | figure | target |",
        "|---|---|---|",
        f"| full lifecycles/s, one worker, dev server ({life['lifecycles']} lifecycles,"
        f" {life['concurrency']} at a time) | ours {life['ours_per_second']}, bare Temporal"
        f" baseline {life['baseline_per_second']}: ratio **{life['ratio']}** | >= 0.8:"
        f" {_verdict(life['ratio'] >= LIFECYCLE_RATIO_TARGET)} |",
        f"| approval through the API, request to new view ({approval['approvals']} approvals)"
        f" | p50 **{approval['p50_ms']} ms**, p95 **{approval['p95_ms']} ms** | p95 < 150 ms:"
        f" {_verdict(approval['p95_ms'] < APPROVAL_P95_TARGET_MS)} |",
    ]
    for name, path in (("list", "GET /trials"), ("inbox", "GET /inbox")):
        figures = largest[name]
        p99 = figures["api"]["p99_ms"]
        lines.append(
            f"| {path} at {largest['trials']:,} trials | p99 **{p99} ms**, raw SQL p99"
            f" {figures['raw_sql']['p99_ms']} ms: ratio **{figures['p99_ratio']}** | p99 < 20 ms:"
            f" {_verdict(p99 < READ_P99_TARGET_MS)}; < 1.5 x raw:"
            f" {_verdict(figures['p99_ratio'] < READ_RATIO_TARGET)} |"
        )
    lines += [
        f"| worker memory with {memory['open_trials']:,} open trials waiting on timers |"
        f" **{memory['worker_rss_mb']} MB** (idle {memory['worker_rss_idle_mb']} MB) | < 300 MB:"
        f" {_verdict(memory['worker_rss_mb'] < MEMORY_TARGET_MB)} |",
        "",
        "Reads through the API (as a team leader: HTTP, token check, the caller's directory entry"
        " (kept 5 s) and JSON included) beside the same SQL statements replayed on one raw"
        " asyncpg connection, in ms."
        f" The HTTP floor, GET /healthz on the same API process with no database work, is p50"
        f" {reads['http_floor']['p50_ms']} ms, p99 {reads['http_floor']['p99_ms']} ms:",
        "",
        "| request | trials | statements | API p50 | API p99 | raw SQL p50 | raw SQL p99"
        " | p99 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale in reads["scales"]:
        for name, path in (("list", "GET /trials"), ("inbox", "GET /inbox")):
            f = scale[name]
            lines.append(
                f"| {path} | {scale['trials']:,} | {f['statements']} | {f['api']['p50_ms']} |"
                f" {f['api']['p99_ms']} | {f['raw_sql']['p50_ms']} | {f['raw_sql']['p99_ms']} |"
                f" {f['p99_ratio']} |"
            )
    return "\n".join(lines)


def write(readme: Path, section: str) -> None:
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: no {START} ... {END} section to fill")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{section}\n{END}", text), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    write(args.readme, render(json.loads(args.results.read_text(encoding="utf-8"))))
    print(f"{args.readme}: benchmark section written from {args.results}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
