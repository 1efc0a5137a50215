"""Channel settings in the directory: Teams URLs on units and organisations, and webhooks."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from store.directory import DirectoryError, load_directory_file, parse_directory_text
from store.directory_queries import teams_channel, webhooks

DEMO = Path(__file__).resolve().parents[1] / "workers" / "demo" / "directory.yaml"


def directory_yaml(s: str, *, hook_events: str = "[approved, stalled]", extra: str = "") -> str:
    return f"""
organisations:
  - id: org-{s}
    name: Kommune {s}
    teams_webhook_url: https://flows.example/org-{s}?sig=abc
    webhooks:
      - id: esdh
        url: https://esdh.example/hooks/{s}
        secret: a-long-enough-secret-{s}
        events: {hook_events}
      - id: bi
        url: https://bi.example/in
        secret: another-long-secret-{s}
        active: false
{extra}
    units:
      - id: top-{s}
        name: Top
        leaders: [chef-{s}]
      - id: mid-{s}
        name: Midt
        parent: top-{s}
        teams_webhook_url: https://flows.example/mid-{s}
        leaders: [chef-{s}]
      - id: team-{s}
        name: Team
        parent: mid-{s}
        leaders: [chef-{s}]
    people:
      - id: chef-{s}
        name: Chef
        email: chef-{s}@kommune.example
"""


async def test_channels_load_and_the_nearest_teams_url_wins(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    s = uuid.uuid4().hex[:8]
    path = tmp_path / "directory.yaml"
    path.write_text(directory_yaml(s), encoding="utf-8")
    first = await load_directory_file(pool, path)
    assert (first.webhooks.inserted, first.webhooks.updated) == (2, 0)
    again = await load_directory_file(pool, path)
    assert not again.changed

    team = await teams_channel(pool, f"org-{s}", f"team-{s}")
    assert team is not None and team.owner == f"unit:mid-{s}"
    assert team.url == f"https://flows.example/mid-{s}"
    top = await teams_channel(pool, f"org-{s}", f"top-{s}")
    assert top is not None and top.owner == f"organisation:org-{s}"
    assert await teams_channel(pool, "another-org", f"team-{s}") is None  # tenants stay apart

    hooks = {h.id: h for h in await webhooks(pool, f"org-{s}")}
    assert hooks["esdh"].events == ["approved", "stalled"]
    assert hooks["esdh"].wants("approved") and not hooks["esdh"].wants("proposed")
    assert not hooks["bi"].wants("approved")  # inactive
    assert "secret" not in repr(hooks["esdh"])

    path.write_text(directory_yaml(s, hook_events="[stalled, approved]"), encoding="utf-8")
    assert not (await load_directory_file(pool, path)).changed  # same filter, other order
    path.write_text(directory_yaml(s, hook_events="[]"), encoding="utf-8")
    changed = await load_directory_file(pool, path)
    assert (changed.webhooks.updated, changed.webhooks.deleted) == (1, 0)


def test_unknown_event_kinds_and_duplicate_webhooks_are_refused() -> None:
    s = "x"
    text = directory_yaml(
        s,
        hook_events="[approved, aproved]",
        extra="""      - id: esdh
        url: https://other.example/
        secret: yet-another-long-secret""",
    )
    with pytest.raises(DirectoryError) as refused:
        parse_directory_text(text)
    problems = "\n".join(refused.value.problems)
    assert "organisations[0].webhooks[0] (id 'esdh'): unknown event kind 'aproved'" in problems
    assert "duplicate webhook id 'esdh', first defined at organisations[0].webhooks[0]" in problems

    with pytest.raises(DirectoryError) as bad_url:
        parse_directory_text(directory_yaml(s).replace("https://bi.example/in", "ftp://bi"))
    assert "organisations[0].webhooks[1].url" in str(bad_url.value)


def test_the_demo_directory_still_loads() -> None:
    parse_directory_text(DEMO.read_text(encoding="utf-8"))
