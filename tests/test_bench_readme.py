"""The README's benchmark section is rendered from a results file, with each target judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.readme import END, README, START, render, write


def _results(list_p99: float, raw_p99: float, memory_mb: float) -> dict[str, Any]:
    def read(api_p99: float) -> dict[str, Any]:
        return {
            "api": {"p50_ms": 1.0, "p99_ms": api_p99},
            "raw_sql": {"p50_ms": 0.2, "p99_ms": raw_p99},
            "statements": 1,
            "p99_ratio": round(api_p99 / raw_p99, 2),
        }

    return {
        "when": "2026-11-27T15:00:00+00:00",
        "mode": "full",
        "machine": {"cpus": 2, "memory_gb": 23.5, "python": "3.11.7", "platform": "Linux"},
        "lifecycles": {
            "lifecycles": 60,
            "concurrency": 20,
            "ours_per_second": 2.0,
            "baseline_per_second": 2.2,
            "ratio": 0.909,
        },
        "approval_round_trip": {"approvals": 100, "p50_ms": 70.0, "p95_ms": 160.0},
        "read_queries": {
            "http_floor": {"p50_ms": 0.7, "p99_ms": 0.9},
            "scales": [{"trials": 100_000, "list": read(list_p99), "inbox": read(list_p99 * 3)}],
        },
        "worker_memory": {
            "open_trials": 5000,
            "worker_rss_idle_mb": 110.0,
            "worker_rss_mb": memory_mb,
        },
    }


def test_each_target_is_judged_from_the_figures() -> None:
    section = render(_results(list_p99=1.2, raw_p99=1.0, memory_mb=250.0))
    assert "ratio **0.909** | >= 0.8: met" in section
    assert "p95 < 150 ms: **missed**" in section  # 160 ms
    assert "| GET /trials at 100,000 trials | p99 **1.2 ms**" in section
    assert "p99 < 20 ms: met; < 1.5 x raw: met |" in section  # 1.2 vs 1.0
    assert "p99 < 20 ms: met; < 1.5 x raw: **missed** |" in section  # inbox: 3.6 vs 1.0
    assert "**250.0 MB** (idle 110.0 MB) | < 300 MB: met" in section
    assert "`make bench`" in section and "2 cores" in section
    heavy = render(_results(list_p99=25.0, raw_p99=20.0, memory_mb=310.0))
    assert "p99 < 20 ms: **missed**; < 1.5 x raw: met |" in heavy
    assert "< 300 MB: **missed**" in heavy
    assert "Why the reads miss 1.5 times the raw query" in section
    assert "the API adds 0.1 ms to a page and 0.1 ms to an inbox (p50)" in section  # 1.0-0.7-0.2


def test_no_explanation_when_the_reads_meet_the_ratio() -> None:
    results = _results(list_p99=1.2, raw_p99=1.0, memory_mb=250.0)
    results["read_queries"]["scales"][0]["inbox"] = results["read_queries"]["scales"][0]["list"]
    section = render(results)
    assert "< 1.5 x raw: **missed**" not in section
    assert "Why the reads miss" not in section


def test_the_section_is_replaced_whole(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\nold figures\n{END}\n\n## After\n", encoding="utf-8")
    write(readme, "new figures")
    assert readme.read_text(encoding="utf-8") == (
        f"# Title\n\n{START}\nnew figures\n{END}\n\n## After\n"
    )
    assert START in README.read_text(encoding="utf-8")  # the real README has the section
