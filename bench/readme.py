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

from bench import targets
from bench.__main__ import RESULTS

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


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
        f" baseline {life['baseline_per_second']}: ratio **{life['ratio']}** |"
        f" >= {targets.LIFECYCLE_RATIO:g}:"
        f" {_verdict(life['ratio'] >= targets.LIFECYCLE_RATIO)} |",
        f"| approval through the API, request to new view ({approval['approvals']} approvals)"
        f" | p50 **{approval['p50_ms']} ms**, p95 **{approval['p95_ms']} ms** |"
        f" p95 < {targets.APPROVAL_P95_MS:g} ms:"
        f" {_verdict(approval['p95_ms'] < targets.APPROVAL_P95_MS)} |",
    ]
    for name, path in (("list", "GET /trials"), ("inbox", "GET /inbox")):
        figures = largest[name]
        p99 = figures["api"]["p99_ms"]
        lines.append(
            f"| {path} at {largest['trials']:,} trials | p99 **{p99} ms**, raw SQL p99"
            f" {figures['raw_sql']['p99_ms']} ms: ratio **{figures['p99_ratio']}** |"
            f" p99 < {targets.READ_P99_MS:g} ms: {_verdict(p99 < targets.READ_P99_MS)};"
            f" < {targets.READ_RAW_RATIO:g} x raw:"
            f" {_verdict(figures['p99_ratio'] < targets.READ_RAW_RATIO)} |"
        )
    lines += [
        f"| worker memory with {memory['open_trials']:,} open trials waiting on timers |"
        f" **{memory['worker_rss_mb']} MB** (idle {memory['worker_rss_idle_mb']} MB) |"
        f" < {targets.WORKER_MEMORY_MB:g} MB:"
        f" {_verdict(memory['worker_rss_mb'] < targets.WORKER_MEMORY_MB)} |",
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
    lines += _overhead(reads)
    return "\n".join(lines)


def _overhead(reads: dict[str, Any]) -> list[str]:
    """Where a read's time goes beyond its SQL, when the ratio target is missed."""
    largest = reads["scales"][-1]
    if all(largest[name]["p99_ratio"] < targets.READ_RAW_RATIO for name in ("list", "inbox")):
        return []
    floor = reads["http_floor"]["p50_ms"]

    def beyond(name: str) -> float:  # what the API adds beyond the HTTP floor and the SQL, p50
        figures = largest[name]
        return round(figures["api"]["p50_ms"] - floor - figures["raw_sql"]["p50_ms"], 2)

    raw_list = largest["list"]["raw_sql"]["p50_ms"]
    return [
        "",
        f"Why the reads miss {targets.READ_RAW_RATIO:g} times the raw query: at"
        f" {largest['trials']:,} trials the SQL behind a page takes {raw_list} ms and the inbox's"
        f" {largest['inbox']['statements']} statements {largest['inbox']['raw_sql']['p50_ms']} ms"
        f" (p50), while an HTTP request that does no database work at all costs {floor} ms,"
        f" {floor / raw_list:.1f} times the list query, before any work is done. Beyond that floor"
        f" and the SQL, the API adds {beyond('list')} ms to a page and {beyond('inbox')} ms to an"
        " inbox (p50): the token check, the connection pool, the inbox's read-only transaction"
        " and building the JSON. We keep those rather than chase a ratio no HTTP service over a"
        " sub-millisecond query can reach.",
    ]


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
