"""The directory: loading the YAML file (whole or not at all, idempotent) and the look-ups on it.

All tests share one database per run, so each builds its own organisation with ids suffixed by a
fresh uuid fragment; the demo file's fixed ids are only loaded by the demo tests.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import store.directory as directory_module
from schemas.directory import DirectoryFile, EligibleApprover
from schemas.trial import EscalationQuery, Step
from store.directory import (
    DirectoryError,
    load_directory,
    load_directory_file,
    parse_directory_file,
    parse_directory_text,
)
from store.directory_queries import (
    eligible_approvers,
    escalation_target,
    is_member,
    organisation_policy,
    person,
    units_led_by,
)

DEMO = Path(__file__).resolve().parents[1] / "workers" / "demo" / "directory.yaml"

TABLES = {
    "organisations": "SELECT id, name, policy::text, updated_at FROM organisations ORDER BY id",
    "units": "SELECT id, organisation_id, parent_id, name, updated_at FROM units ORDER BY id",
    "people": "SELECT id, organisation_id, name, email, locale, admin, updated_at"
    " FROM people ORDER BY id",
    "unit_leaders": "SELECT unit_id, person_id FROM unit_leaders ORDER BY 1, 2",
    "unit_members": "SELECT unit_id, person_id FROM unit_members ORDER BY 1, 2",
    "substitutes": "SELECT leader_id, substitute_id, valid_from, valid_to"
    " FROM substitutes ORDER BY 1, 2, 3",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every directory table, updated_at included."""
    return {name: [tuple(r) for r in await pool.fetch(sql)] for name, sql in TABLES.items()}


def fresh() -> str:
    return uuid.uuid4().hex[:8]


def write(folder: Path, text: str) -> Path:
    path = folder / f"directory-{fresh()}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def small_org(
    s: str,
    *,
    team_name: str = "Team Nord",
    with_employee: bool = True,
    substitutes: str = "",
    extra_people: str = "",
    mid_leaders: str = "[chef-{s}]",
    top_parent: str = "",
    approval_sla: str = "5 working days",
) -> str:
    """A four-level tree: top > mid > empty (no leaders) > team."""
    employee = (
        f"""
      - id: emp-{s}
        name: Ea Mikkelsen
        email: emp-{s}@kom.example
        units: [team-{s}]"""
        if with_employee
        else ""
    )
    return f"""
organisations:
  - id: kom-{s}
    name: Testkommune {s}
    policy:
      approval_sla: {approval_sla}
      extra_holidays: ["06-05", "12-24"]
    units:
      - id: top-{s}
        name: Direktionen{top_parent}
        leaders: [dir-{s}]
      - id: mid-{s}
        name: Social og Beskæftigelse
        parent: top-{s}
        leaders: {mid_leaders.format(s=s)}
      - id: empty-{s}
        name: Sekretariatet
        parent: mid-{s}
      - id: team-{s}
        name: {team_name}
        parent: empty-{s}
        leaders: [lead-{s}]
    people:
      - id: dir-{s}
        name: Dorte Iversen
        email: dir-{s}@kom.example
      - id: chef-{s}
        name: Christian Fog
        email: chef-{s}@kom.example
      - id: lead-{s}
        name: Lene Dam
        email: lead-{s}@kom.example
      - id: sub-{s}
        name: Svend Ulriksen
        email: sub-{s}@kom.example
        units: [team-{s}]{employee}{extra_people}
    substitutes: [{substitutes}]
"""


def suffixed(directory: DirectoryFile, s: str) -> DirectoryFile:
    """The same directory with every id suffixed, so it can be loaded fresh in a shared database."""
    data = directory.model_dump(mode="json", by_alias=True)
    for org in data["organisations"]:
        org["id"] += f"-{s}"
        for unit in org["units"]:
            unit["id"] += f"-{s}"
            unit["parent"] = unit["parent"] and f"{unit['parent']}-{s}"
            unit["leaders"] = [f"{p}-{s}" for p in unit["leaders"]]
        for p in org["people"]:
            p["id"] += f"-{s}"
            p["units"] = [f"{u}-{s}" for u in p["units"]]
        for sub in org["substitutes"]:
            sub["leader"] += f"-{s}"
            sub["substitute"] += f"-{s}"
    return DirectoryFile.model_validate(data)


def counts(report: Any) -> dict[str, tuple[int, int, int]]:
    return {
        name: (c.inserted, c.updated, c.deleted) for name, c in report.tables().items() if c.changed
    }


# --- loading ---------------------------------------------------------------------------------


async def test_demo_file_loads_and_second_load_changes_nothing(pool: asyncpg.Pool) -> None:
    await load_directory_file(pool, DEMO)  # other tests may have loaded it already
    before = await snapshot(pool)

    again = await load_directory_file(pool, DEMO)

    assert not again.changed
    assert counts(again) == {}
    assert "nothing changed" in again.summary()
    assert await snapshot(pool) == before

    policy = await organisation_policy(pool, "aarhus")
    assert policy is not None
    assert policy.extra_holidays == ("06-05", "12-24", "12-31")
    assert policy.approval_sla.is_working_days
    maria = await person(pool, "maria.gonzalez")
    assert maria is not None and maria.locale == "en" and maria.units == ["sundhedsplejen"]
    approvers = await eligible_approvers(pool, "aarhus", "hjemmeplejen-nord", date(2026, 9, 1))
    assert approvers == [
        EligibleApprover(person_id="anne.holm", via="leader"),
        EligibleApprover(
            person_id="tove.jessen",
            via="substitute",
            on_behalf_of="anne.holm",
            valid_from=date(2026, 1, 1),
            valid_to=date(2027, 12, 31),
        ),
    ]


async def test_demo_file_counts_on_a_fresh_load(pool: asyncpg.Pool) -> None:
    demo = suffixed(parse_directory_file(DEMO), fresh())
    orgs = demo.organisations

    first = await load_directory(pool, demo)

    assert first.changed
    assert counts(first) == {
        "organisations": (2, 0, 0),
        "units": (sum(len(o.units) for o in orgs), 0, 0),
        "people": (sum(len(o.people) for o in orgs), 0, 0),
        "unit_leaders": (sum(len(u.leaders) for o in orgs for u in o.units), 0, 0),
        "unit_members": (sum(len(p.units) for o in orgs for p in o.people), 0, 0),
        "substitutes": (1, 0, 0),
    }
    assert "inserted" in first.summary()
    before = await snapshot(pool)
    second = await load_directory(pool, demo)
    assert not second.changed
    assert await snapshot(pool) == before


async def test_changed_file_updates_exactly_what_changed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    s = fresh()
    await load_directory_file(pool, write(tmp_path, small_org(s)))
    before = await snapshot(pool)

    changed = small_org(
        s,
        team_name="Team Nord og Vest",
        with_employee=False,
        substitutes=f"{{leader: chef-{s}, substitute: sub-{s}, from: 2026-07-01, to: 2026-08-15}}",
    )
    report = await load_directory_file(pool, write(tmp_path, changed))

    assert counts(report) == {
        "units": (0, 1, 0),
        "people": (0, 0, 1),
        "unit_members": (0, 0, 1),
        "substitutes": (1, 0, 0),
    }
    after = await snapshot(pool)
    for table in ("organisations", "unit_leaders"):
        assert after[table] == before[table]
    units_before = {row[0]: row for row in before["units"]}
    units_after = {row[0]: row for row in after["units"]}
    assert units_after[f"team-{s}"][3] == "Team Nord og Vest"
    assert units_after[f"team-{s}"][4] > units_before[f"team-{s}"][4]
    for unit in (f"top-{s}", f"mid-{s}", f"empty-{s}"):
        assert units_after[unit] == units_before[unit]  # updated_at not bumped
    assert await person(pool, f"emp-{s}") is None
    assert set(after["people"]) == set(before["people"]) - {
        row for row in before["people"] if row[0] == f"emp-{s}"
    }
    assert (f"chef-{s}", f"sub-{s}", date(2026, 7, 1), date(2026, 8, 15)) in after["substitutes"]


async def test_other_organisations_are_untouched(pool: asyncpg.Pool, tmp_path: Path) -> None:
    a, b = fresh(), fresh()
    await load_directory_file(pool, write(tmp_path, small_org(a)))
    await load_directory_file(pool, write(tmp_path, small_org(b)))
    rows_of_a = await pool.fetch("SELECT id FROM people WHERE organisation_id = $1", f"kom-{a}")

    await load_directory_file(pool, write(tmp_path, small_org(b, with_employee=False)))

    assert (
        await pool.fetch("SELECT id FROM people WHERE organisation_id = $1", f"kom-{a}")
        == rows_of_a
    )


BAD_FILES = {
    "unknown leader": (
        {"mid_leaders": "[chef-{s}, ghost-{s}]"},
        "organisations[0].units[1] (id 'mid-{s}'): leader 'ghost-{s}' is not a person of"
        " organisation 'kom-{s}'",
    ),
    "unit cycle": (
        {"top_parent": "\n        parent: mid-{s}"},
        "organisations[0].units[0] (id 'top-{s}'): units form a cycle:"
        " top-{s} -> mid-{s} -> top-{s}",
    ),
    "bad duration": (
        {"approval_sla": "5 fortnights"},
        "organisations[0].policy.approval_sla (organisation 'kom-{s}'): duration '5 fortnights'"
        " must be a whole number and a unit",
    ),
    "duplicate id": (
        {
            "extra_people": """
      - id: lead-{s}
        name: Lone Dalsgaard
        email: lone-{s}@kom.example"""
        },
        "organisations[0].people[4] (id 'lead-{s}'): duplicate person id 'lead-{s}',"
        " first defined at organisations[0].people[2]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_bad_file_is_refused_whole(pool: asyncpg.Pool, tmp_path: Path, case: str) -> None:
    s = fresh()
    await load_directory_file(pool, write(tmp_path, small_org(s)))
    before = await snapshot(pool)
    options, expected = BAD_FILES[case]
    # Valid changes ride along (a renamed unit, a removed person, a new substitute), so a partial
    # write would show in the snapshot.
    text = small_org(
        s,
        team_name="Omdøbt team",
        with_employee=False,
        substitutes=f"{{leader: lead-{s}, substitute: sub-{s}, from: 2026-01-01, to: 2026-12-31}}",
        **{key: value.replace("{s}", s) for key, value in options.items()},
    )

    with pytest.raises(DirectoryError) as refused:
        await load_directory_file(pool, write(tmp_path, text))

    assert expected.replace("{s}", s) in str(refused.value)
    assert "nothing was loaded" in str(refused.value)
    assert await snapshot(pool) == before


async def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    s = fresh()
    text = small_org(s, mid_leaders="[ghost-{s}]", top_parent=f"\n        parent: nowhere-{s}")
    lines = text.splitlines()
    parent_line = lines.index(f"        parent: nowhere-{s}") + 1
    leaders_line = lines.index(f"        leaders: [ghost-{s}]") + 1
    with pytest.raises(DirectoryError) as refused:
        parse_directory_file(write(tmp_path, text))
    assert refused.value.problems == [
        f"organisations[0].units[0] (id 'top-{s}'): parent 'nowhere-{s}' is not a unit of"
        f" organisation 'kom-{s}' (line {parent_line})",
        f"organisations[0].units[1] (id 'mid-{s}'): leader 'ghost-{s}' is not a person of"
        f" organisation 'kom-{s}' (line {leaders_line})",
    ]
    assert len(str(refused.value).splitlines()) == 3  # a header and one line per problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("organisations:\n  - id: a\n   name: [x\n", "YAML syntax error at line 3"),
        ("- just\n- a list\n", "must be a mapping with the key 'organisations', not a list"),
        ("", "not an empty file"),
        (
            "organisations:\n  - id: a\n    name: A\n    units: []\n    units: []\n",
            "key 'units' appears twice in one mapping (line 5)",
        ),
    ],
)
async def test_unreadable_files_are_refused(text: str, expected: str) -> None:
    with pytest.raises(DirectoryError, match="nothing was loaded") as refused:
        parse_directory_text(text)
    assert expected in str(refused.value)


async def test_ids_never_move_between_organisations(pool: asyncpg.Pool, tmp_path: Path) -> None:
    s, other = fresh(), fresh()
    await load_directory_file(pool, write(tmp_path, small_org(s)))
    before = await snapshot(pool)
    # A new organisation that reuses a person id and a unit id of kom-{s}.
    text = (
        small_org(other).replace(f"lead-{other}", f"lead-{s}").replace(f"top-{other}", f"top-{s}")
    )

    with pytest.raises(DirectoryError) as refused:
        await load_directory_file(pool, write(tmp_path, text))

    message = str(refused.value)
    assert f"unit 'top-{s}' already belongs to organisation 'kom-{s}'" in message
    assert f"person 'lead-{s}' already belongs to organisation 'kom-{s}'" in message
    assert await snapshot(pool) == before
    assert await organisation_policy(pool, f"kom-{other}") is None


async def test_a_failure_midway_rolls_back_everything(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = fresh()
    await load_directory_file(pool, write(tmp_path, small_org(s)))
    before = await snapshot(pool)
    # Break the last-but-one statement: by then organisations, units, people and links are written.
    monkeypatch.setattr(
        directory_module,
        "_DELETE_UNITS",
        "SELECT cardinality($1::text[]) / (0 * cardinality($2::text[]))",
    )

    with pytest.raises(asyncpg.DivisionByZeroError):
        await load_directory_file(
            pool, write(tmp_path, small_org(s, team_name="Halvt skrevet", with_employee=False))
        )

    assert await snapshot(pool) == before


# --- look-ups --------------------------------------------------------------------------------


async def test_eligible_approvers_include_substitute_periods(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    s = fresh()
    periods = ", ".join(
        f"{{leader: chef-{s}, substitute: {who}-{s}, from: {start}, to: {end}}}"
        for who, start, end in [
            ("sub", "2026-01-05", "2026-01-30"),  # over before the day asked about
            ("sub", "2026-03-02", "2026-03-20"),  # covers it
            ("lead", "2026-06-01", "2026-06-30"),  # not started yet, still returned
        ]
    )
    await load_directory_file(pool, write(tmp_path, small_org(s, substitutes=periods)))

    approvers = await eligible_approvers(pool, f"kom-{s}", f"mid-{s}", date(2026, 3, 10))

    assert approvers == [
        EligibleApprover(person_id=f"chef-{s}", via="leader"),
        EligibleApprover(
            person_id=f"sub-{s}",
            via="substitute",
            on_behalf_of=f"chef-{s}",
            valid_from=date(2026, 3, 2),
            valid_to=date(2026, 3, 20),
        ),
        EligibleApprover(
            person_id=f"lead-{s}",
            via="substitute",
            on_behalf_of=f"chef-{s}",
            valid_from=date(2026, 6, 1),
            valid_to=date(2026, 6, 30),
        ),
    ]
    assert [a.valid_on(date(2026, 3, 10)) for a in approvers] == [True, True, False]
    assert await eligible_approvers(pool, "another-org", f"mid-{s}", date(2026, 3, 10)) == []
    assert await eligible_approvers(pool, f"kom-{s}", f"empty-{s}", date(2026, 3, 10)) == []


async def test_escalation_ladder(pool: asyncpg.Pool, tmp_path: Path) -> None:
    s = fresh()
    absence = f"{{leader: chef-{s}, substitute: sub-{s}, from: 2026-03-02, to: 2026-03-20}}"
    await load_directory_file(pool, write(tmp_path, small_org(s, substitutes=absence)))
    away, present = date(2026, 3, 10), date(2026, 4, 10)

    async def rung(step: Step, level: int, on: date, visited: tuple[str, ...] = ()) -> Any:
        query = EscalationQuery(
            organisation_id=f"kom-{s}",
            unit_id=f"team-{s}",
            step=step,
            level=level,
            already_visited=[f"{unit}-{s}" for unit in visited],
            on=on,
        )
        target = await escalation_target(pool, query)
        if target is None:
            return None
        assert target.level == level
        return target.unit_id.removesuffix(f"-{s}"), [
            (r.person_id.removesuffix(f"-{s}"), r.via, r.on_behalf_of) for r in target.recipients
        ]

    # Employees' steps start with their own unit's leaders.
    assert await rung(Step.CHECK_IN, 1, away) == ("team", [("lead", "escalation", None)])
    # The leaderless unit above is skipped; the absent leader is replaced by the substitute.
    assert await rung(Step.CHECK_IN, 2, away) == ("mid", [("sub", "substitute", f"chef-{s}")])
    assert await rung(Step.EVALUATION, 2, present) == ("mid", [("chef", "escalation", None)])
    assert await rung(Step.CHECK_IN, 3, away) == ("top", [("dir", "escalation", None)])
    assert await rung(Step.CHECK_IN, 4, away) is None
    # Leaders' steps start one unit up (here: past the leaderless unit).
    assert await rung(Step.APPROVAL, 1, present) == ("mid", [("chef", "escalation", None)])
    assert await rung(Step.DECISION, 2, present) == ("top", [("dir", "escalation", None)])
    assert await rung(Step.APPROVAL, 3, present) is None
    # A rung already escalated to is never returned again.
    assert await rung(Step.APPROVAL, 1, present, visited=("mid",)) is None
    assert await rung(Step.APPROVAL, 2, present, visited=("mid",)) == (
        "top",
        [("dir", "escalation", None)],
    )

    target = await escalation_target(
        pool,
        EscalationQuery(
            organisation_id=f"kom-{s}", unit_id=f"team-{s}", step=Step.CHECK_IN, level=2, on=away
        ),
    )
    assert target is not None
    assert target.recipients == [
        EligibleApprover(
            person_id=f"sub-{s}",
            via="substitute",
            on_behalf_of=f"chef-{s}",
            valid_from=date(2026, 3, 2),
            valid_to=date(2026, 3, 20),
        )
    ]
    # Another tenant's query finds nothing.
    assert (
        await escalation_target(
            pool,
            EscalationQuery(
                organisation_id="another-org",
                unit_id=f"team-{s}",
                step=Step.CHECK_IN,
                level=1,
                on=away,
            ),
        )
        is None
    )


async def test_escalation_never_loops(pool: asyncpg.Pool, tmp_path: Path) -> None:
    s = fresh()
    await load_directory_file(pool, write(tmp_path, small_org(s)))
    # The loader refuses cycles; make one behind its back, as a hand edit of the database could.
    await pool.execute("UPDATE units SET parent_id = $1 WHERE id = $2", f"team-{s}", f"top-{s}")
    try:
        for level in range(1, 8):
            query = EscalationQuery(
                organisation_id=f"kom-{s}",
                unit_id=f"team-{s}",
                step=Step.CHECK_IN,
                level=level,
                on=date(2026, 3, 10),
            )
            target = await escalation_target(pool, query)
            expected = {1: "team", 2: "mid", 3: "top"}.get(level)
            assert (target and target.unit_id) == (expected and f"{expected}-{s}")
    finally:
        await pool.execute("UPDATE units SET parent_id = NULL WHERE id = $1", f"top-{s}")


async def test_person_membership_and_leadership(pool: asyncpg.Pool, tmp_path: Path) -> None:
    s = fresh()
    absence = f"{{leader: chef-{s}, substitute: sub-{s}, from: 2026-03-02, to: 2026-03-20}}"
    await load_directory_file(pool, write(tmp_path, small_org(s, substitutes=absence)))

    sub = await person(pool, f"sub-{s}")
    assert sub is not None
    assert (sub.organisation_id, sub.units, sub.leads) == (f"kom-{s}", [f"team-{s}"], [])
    lead = await person(pool, f"lead-{s}")
    assert lead is not None and lead.leads == [f"team-{s}"] and lead.units == []
    assert await person(pool, f"nobody-{s}") is None

    assert await units_led_by(pool, f"sub-{s}", date(2026, 3, 10)) == [f"mid-{s}"]
    assert await units_led_by(pool, f"sub-{s}", date(2026, 3, 21)) == []
    assert await units_led_by(pool, f"lead-{s}", date(2026, 3, 10)) == [f"team-{s}"]

    assert await is_member(pool, f"sub-{s}", f"team-{s}")
    assert not await is_member(pool, f"lead-{s}", f"team-{s}")
    assert not await is_member(pool, f"sub-{s}", f"mid-{s}")
