"""Loading the directory YAML file into PostgreSQL.

The file is authoritative for the organisations it names: after a load their units, people, leaders,
members and substitutes are exactly what the file says. A file is checked completely before anything
is written and refused whole with every problem listed, so an operator fixes it in one go and a
half-loaded directory (a unit without its leaders, say) is never seen by running trials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import yaml
from asyncpg.pool import PoolConnectionProxy
from pydantic import ValidationError

from schemas.directory import DirectoryFile, Organisation
from schemas.trial import EventKind

DIRECTORY_LOCK_KEY = 0x70726F64  # "prod": one directory load at a time, so counts and checks hold

Loc = tuple[str | int, ...]
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

_ENTRY_KINDS = {
    "organisations": "organisation",
    "units": "unit",
    "people": "person",
    "webhooks": "webhook",
}


class DirectoryError(ValueError):
    """The directory file was refused; `problems` lists each one, naming the entry and the rule."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        header = (
            f"{source}: directory refused, nothing was loaded"
            f" ({count} problem{'s' if count != 1 else ''}):"
        )
        super().__init__("\n".join([header, *(f"  {line}" for line in self.problems)]))

    def __reduce__(self) -> tuple[type[DirectoryError], tuple[str, list[str]]]:
        return (DirectoryError, (self.source, self.problems))


# --- parsing and checking --------------------------------------------------------------------


def parse_directory_file(path: Path) -> DirectoryFile:
    """Read and check a directory YAML file; raises DirectoryError listing every problem."""
    return parse_directory_text(Path(path).read_text(encoding="utf-8"), source=str(path))


def parse_directory_text(text: str, source: str = "<directory>") -> DirectoryFile:
    """Check directory YAML given as text (an upload, a test); see parse_directory_file."""
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise DirectoryError(source, [_yaml_problem(exc)]) from None

    if not isinstance(raw, dict):
        found = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise DirectoryError(
            source, [f"the file must be a mapping with the key 'organisations', not {found}"]
        )

    duplicates = _duplicate_keys(root)
    if duplicates:
        raise DirectoryError(source, duplicates)

    try:
        directory = DirectoryFile.model_validate(raw)
    except ValidationError as exc:
        raise DirectoryError(
            source, [_validation_problem(error, raw, root) for error in exc.errors()]
        ) from None

    problems = [problem.render(raw, root) for problem in _cross_check(directory)]
    if problems:
        raise DirectoryError(source, problems)
    return directory


@dataclass(frozen=True)
class _Problem:
    """A broken rule: `entry` is the offending list item, `at` the exact spot (for the line)."""

    entry: Loc
    message: str
    at: Loc = ()

    def render(self, raw: Any, root: yaml.Node | None) -> str:
        text = f"{_path(self.entry)} {_label(raw, self.entry)}: {self.message}"
        return _with_line(text, root, self.at or self.entry)


def _cross_check(directory: DirectoryFile) -> list[_Problem]:
    """The rules pydantic cannot see: ids unique and every reference pointing inside its tenant."""
    problems: list[_Problem] = []
    org_at: dict[str, int] = {}
    unit_at: dict[str, Loc] = {}
    person_at: dict[str, Loc] = {}
    unit_org: dict[str, str] = {}
    person_org: dict[str, str] = {}

    def first(kind: str, seen: dict[str, Loc], key: str, where: Loc) -> bool:
        if key in seen:
            problems.append(
                _Problem(where, f"duplicate {kind} id '{key}', first defined at {_path(seen[key])}")
            )
            return False
        seen[key] = where
        return True

    for oi, org in enumerate(directory.organisations):
        if org.id in org_at:
            problems.append(
                _Problem(
                    ("organisations", oi),
                    f"duplicate organisation id '{org.id}', first defined at"
                    f" organisations[{org_at[org.id]}]",
                )
            )
        else:
            org_at[org.id] = oi
        for ui, unit in enumerate(org.units):
            if first("unit", unit_at, unit.id, ("organisations", oi, "units", ui)):
                unit_org[unit.id] = org.id
        for pi, person in enumerate(org.people):
            if first("person", person_at, person.id, ("organisations", oi, "people", pi)):
                person_org[person.id] = org.id

    for oi, org in enumerate(directory.organisations):
        problems.extend(_check_organisation(oi, org, unit_org, person_org))
    return sorted(problems, key=_file_order)


def _file_order(problem: _Problem) -> tuple[int, ...]:
    """Problems in the order their entries appear in the file, so they read top to bottom."""
    sections = {"units": 0, "people": 1, "substitutes": 2, "webhooks": 3}
    key: list[int] = []
    for part in problem.entry:
        if isinstance(part, int):
            key.append(part)
        elif part in sections:
            key.append(sections[part])
    return tuple(key)


def _check_organisation(
    oi: int, org: Organisation, unit_org: dict[str, str], person_org: dict[str, str]
) -> list[_Problem]:
    problems: list[_Problem] = []
    here = f"organisation '{org.id}'"
    parents: dict[str, str] = {}
    led: set[str] = set()

    for ui, unit in enumerate(org.units):
        where: Loc = ("organisations", oi, "units", ui)
        if unit.parent is not None:
            owner = unit_org.get(unit.parent)
            if owner is None:
                problems.append(
                    _Problem(
                        where, f"parent '{unit.parent}' is not a unit of {here}", (*where, "parent")
                    )
                )
            elif owner != org.id:
                problems.append(
                    _Problem(
                        where,
                        f"parent '{unit.parent}' is a unit of organisation '{owner}', not of"
                        f" {here}",
                        (*where, "parent"),
                    )
                )
            elif unit_org.get(unit.id) == org.id:
                parents.setdefault(unit.id, unit.parent)
        seen: set[str] = set()
        for li, leader in enumerate(unit.leaders):
            at: Loc = (*where, "leaders", li)
            if leader in seen:
                problems.append(_Problem(where, f"leader '{leader}' is listed twice", at))
            seen.add(leader)
            if person_org.get(leader) != org.id:
                problems.append(_Problem(where, f"leader '{leader}' is not a person of {here}", at))
            led.add(leader)

    for pi, person in enumerate(org.people):
        where = ("organisations", oi, "people", pi)
        seen = set()
        for mi, unit_id in enumerate(person.units):
            at = (*where, "units", mi)
            if unit_id in seen:
                problems.append(_Problem(where, f"unit '{unit_id}' is listed twice", at))
            seen.add(unit_id)
            if unit_org.get(unit_id) != org.id:
                problems.append(_Problem(where, f"unit '{unit_id}' is not a unit of {here}", at))

    periods: set[tuple[str, str, object]] = set()
    for si, sub in enumerate(org.substitutes):
        where = ("organisations", oi, "substitutes", si)
        if person_org.get(sub.leader) != org.id:
            problems.append(
                _Problem(
                    where, f"leader '{sub.leader}' is not a person of {here}", (*where, "leader")
                )
            )
        elif sub.leader not in led:
            problems.append(
                _Problem(
                    where,
                    f"leader '{sub.leader}' leads no unit, so there is nobody to substitute",
                    (*where, "leader"),
                )
            )
        if person_org.get(sub.substitute) != org.id:
            problems.append(
                _Problem(
                    where,
                    f"substitute '{sub.substitute}' is not a person of {here}",
                    (*where, "substitute"),
                )
            )
        key = (sub.leader, sub.substitute, sub.from_date)
        if key in periods:
            problems.append(
                _Problem(
                    where,
                    f"the period from {sub.from_date} for leader '{sub.leader}' and substitute"
                    f" '{sub.substitute}' is listed twice",
                )
            )
        periods.add(key)

    problems.extend(_webhook_problems(oi, org))
    problems.extend(_cycles(oi, org, parents))
    return problems


def _webhook_problems(oi: int, org: Organisation) -> list[_Problem]:
    """Webhook ids unique within the organisation, event filters naming real event kinds."""
    problems: list[_Problem] = []
    known = {kind.value for kind in EventKind}
    seen: dict[str, int] = {}
    for wi, hook in enumerate(org.webhooks):
        where: Loc = ("organisations", oi, "webhooks", wi)
        if hook.id in seen:
            problems.append(
                _Problem(
                    where,
                    f"duplicate webhook id '{hook.id}', first defined at"
                    f" {_path(('organisations', oi, 'webhooks', seen[hook.id]))}",
                )
            )
        else:
            seen[hook.id] = wi
        for ei, event in enumerate(hook.events):
            if event not in known:
                problems.append(
                    _Problem(
                        where,
                        f"unknown event kind '{event}'; known kinds: {', '.join(sorted(known))}",
                        (*where, "events", ei),
                    )
                )
    return problems


def _cycles(oi: int, org: Organisation, parents: dict[str, str]) -> list[_Problem]:
    """Each parent cycle once, named from its first unit in file order."""
    index = {unit.id: ui for ui, unit in reversed(list(enumerate(org.units)))}
    state: dict[str, int] = {}  # 1: on the current walk, 2: finished
    problems: list[_Problem] = []
    for unit in org.units:
        walk: list[str] = []
        current: str | None = unit.id
        while current is not None and current not in state:
            state[current] = 1
            walk.append(current)
            current = parents.get(current)
        if current is not None and state.get(current) == 1:
            cycle = walk[walk.index(current) :]
            start = min(range(len(cycle)), key=lambda i: index[cycle[i]])
            cycle = cycle[start:] + cycle[:start]
            names = " -> ".join([*cycle, cycle[0]])
            where: Loc = ("organisations", oi, "units", index[cycle[0]])
            problems.append(_Problem(where, f"units form a cycle: {names}", (*where, "parent")))
        for unit_id in walk:
            state[unit_id] = 2
    return problems


# --- rendering problems --------------------------------------------------------------------


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _follow(raw: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(raw, list) and 0 <= part < len(raw):
            raw = raw[part]
        elif isinstance(part, str) and isinstance(raw, dict) and part in raw:
            raw = raw[part]
        else:
            return None
    return raw


def _describe(raw: Any, loc: Loc, *, kind_word: bool) -> str:
    """`(id 'x')` for the entry itself, `(unit 'x')` when pointing inside it."""
    item = _follow(raw, loc)
    if not isinstance(item, dict) or len(loc) < 2 or not isinstance(loc[-2], str):
        return ""
    list_name = loc[-2]
    if list_name == "substitutes":
        return f"(leader {item.get('leader')!r}, substitute {item.get('substitute')!r})"
    if list_name in _ENTRY_KINDS and "id" in item:
        word = _ENTRY_KINDS[list_name] if kind_word else "id"
        return f"({word} {item['id']!r})"
    return ""


def _label(raw: Any, entry: Loc) -> str:
    return _describe(raw, entry, kind_word=False)


def _innermost_entry(loc: Loc) -> Loc:
    for end in range(len(loc), 1, -1):
        if isinstance(loc[end - 1], int) and loc[end - 2] in (*_ENTRY_KINDS, "substitutes"):
            return loc[:end]
    return ()


def _validation_problem(error: Any, raw: Any, root: yaml.Node | None) -> str:
    loc: Loc = tuple(error["loc"])
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    value = error.get("input")
    if error["type"] not in ("value_error", "missing", "extra_forbidden") and isinstance(
        value, str | int | float | bool
    ):
        message += f", got {value!r}"
    entry = _innermost_entry(loc)
    label = _describe(raw, entry, kind_word=entry != loc) if entry else ""
    text = f"{_path(loc)} {label}: {message}" if label else f"{_path(loc)}: {message}"
    return _with_line(text, root, loc)


def _node_at(root: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    """The YAML node at loc, or the deepest one on the way (its line is still a good pointer)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        else:
            child = None
        if child is None:
            break
        node = child
    return node


def _with_line(text: str, root: yaml.Node | None, loc: Loc) -> str:
    node = _node_at(root, loc)
    if node is None or root is None or node is root:
        return text
    return f"{text} (line {node.start_mark.line + 1})"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    reason = f"{context}, {problem}" if context else str(problem)
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {reason}"
    return f"YAML syntax error: {reason}"


def _duplicate_keys(root: yaml.Node | None) -> list[str]:
    """safe_load keeps the last of two equal keys silently; a lost `leaders:` must not go unseen."""
    problems: list[tuple[int, str]] = []
    stack: list[yaml.Node] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        line = key.start_mark.line + 1
                        problems.append(
                            (
                                line,
                                f"key '{key.value}' appears twice in one mapping (line {line})",
                            )
                        )
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return [text for _, text in sorted(problems)]


# --- loading ---------------------------------------------------------------------------------


@dataclass
class TableCounts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass
class LoadReport:
    """What one load changed, table by table; a repeated load of the same file changes nothing."""

    organisation_ids: list[str] = field(default_factory=list)
    organisations: TableCounts = field(default_factory=TableCounts)
    units: TableCounts = field(default_factory=TableCounts)
    people: TableCounts = field(default_factory=TableCounts)
    unit_leaders: TableCounts = field(default_factory=TableCounts)
    unit_members: TableCounts = field(default_factory=TableCounts)
    substitutes: TableCounts = field(default_factory=TableCounts)
    webhooks: TableCounts = field(default_factory=TableCounts)

    def tables(self) -> dict[str, TableCounts]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "organisation_ids"}

    @property
    def changed(self) -> bool:
        return any(counts.changed for counts in self.tables().values())

    def summary(self) -> str:
        orgs = ", ".join(self.organisation_ids)
        if not self.changed:
            return f"Directory for {orgs}: already up to date, nothing changed."
        lines = [
            f"Directory for {orgs} loaded:",
            f"  {'table':<14}{'inserted':>9}{'updated':>9}{'deleted':>9}",
        ]
        for name, c in self.tables().items():
            lines.append(f"  {name:<14}{c.inserted:>9}{c.updated:>9}{c.deleted:>9}")
        return "\n".join(lines)


async def load_directory_file(pool: asyncpg.Pool, path: Path) -> LoadReport:
    """Check the file, then load it; nothing is written when it has any problem."""
    return await load_directory(pool, parse_directory_file(path), source=str(path))


async def load_directory(
    pool: asyncpg.Pool, directory: DirectoryFile, *, source: str = "<directory>"
) -> LoadReport:
    """Make the database match the file for the organisations it names, in one transaction."""
    checked = _cross_check(directory)  # callers may build a DirectoryFile without parsing a file
    if checked:
        raw = directory.model_dump(mode="json", by_alias=True)
        raise DirectoryError(source, [problem.render(raw, None) for problem in checked])
    rows = _Rows.of(directory)
    report = LoadReport(organisation_ids=rows.org_ids)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", DIRECTORY_LOCK_KEY)
        problems = await _foreign_ids(conn, directory)
        if problems:
            raise DirectoryError(source, problems)

        report.organisations = await _upsert(conn, _UPSERT_ORGANISATIONS, *rows.organisations)
        report.units = await _upsert(conn, _UPSERT_UNITS, *rows.units)
        report.people = await _upsert(conn, _UPSERT_PEOPLE, *rows.people)
        report.substitutes = await _upsert(conn, _UPSERT_SUBSTITUTES, *rows.substitutes)
        report.unit_leaders = await _upsert(conn, _INSERT_LEADERS, *rows.leaders)
        report.unit_members = await _upsert(conn, _INSERT_MEMBERS, *rows.members)
        report.webhooks = await _upsert(conn, _UPSERT_WEBHOOKS, *rows.webhooks)

        # Stale links go before stale units and people, so their cascades delete nothing
        # uncounted.
        orgs = rows.org_ids
        report.substitutes.deleted = await _count(
            conn, _DELETE_SUBSTITUTES, orgs, *rows.substitutes[:3]
        )
        report.unit_leaders.deleted = await _count(conn, _DELETE_LEADERS, orgs, *rows.leaders)
        report.unit_members.deleted = await _count(conn, _DELETE_MEMBERS, orgs, *rows.members)
        report.units.deleted = await _count(conn, _DELETE_UNITS, orgs, rows.units[0])
        report.people.deleted = await _count(conn, _DELETE_PEOPLE, orgs, rows.people[0])
        report.webhooks.deleted = await _count(conn, _DELETE_WEBHOOKS, orgs, *rows.webhooks[:2])
    return report


@dataclass
class _Rows:
    """The file as column arrays, one list per column, for set-based statements with unnest."""

    org_ids: list[str]
    organisations: tuple[list[Any], ...]
    units: tuple[list[Any], ...]
    people: tuple[list[Any], ...]
    leaders: tuple[list[Any], ...]
    members: tuple[list[Any], ...]
    substitutes: tuple[list[Any], ...]
    webhooks: tuple[list[Any], ...]

    @classmethod
    def of(cls, directory: DirectoryFile) -> _Rows:
        orgs = directory.organisations
        units = [(u.id, o.id, u.parent, u.name, u.teams_webhook_url) for o in orgs for u in o.units]
        people = [
            (p.id, o.id, p.name, str(p.email), p.locale, p.admin) for o in orgs for p in o.people
        ]
        leaders = [(u.id, leader) for o in orgs for u in o.units for leader in u.leaders]
        members = [(unit, p.id) for o in orgs for p in o.people for unit in p.units]
        subs = [
            (s.leader, s.substitute, s.from_date, s.to_date) for o in orgs for s in o.substitutes
        ]
        policies = [
            (o.id, o.name, json.dumps(o.policy.model_dump(mode="json")), o.teams_webhook_url)
            for o in orgs
        ]
        # Events go as JSON text (unnest cannot take ragged arrays) and sorted, so reordering
        # a filter in the file is no change.
        webhooks = [
            (o.id, w.id, w.url, w.secret, json.dumps(sorted(set(w.events))), w.active)
            for o in orgs
            for w in o.webhooks
        ]
        return cls(
            org_ids=[o.id for o in orgs],
            organisations=_columns(policies, 4),
            units=_columns(units, 5),
            people=_columns(people, 6),
            leaders=_columns(leaders, 2),
            members=_columns(members, 2),
            substitutes=_columns(subs, 4),
            webhooks=_columns(webhooks, 6),
        )


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    columns: tuple[list[Any], ...] = tuple([] for _ in range(width))
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def _foreign_ids(conn: Conn, directory: DirectoryFile) -> list[str]:
    """Ids that already belong to another organisation: moving them would move a tenant's data."""
    problems: list[str] = []
    for table, list_name, kind in (("units", "units", "unit"), ("people", "people", "person")):
        where: dict[str, tuple[Loc, str]] = {}
        for oi, org in enumerate(directory.organisations):
            for ei, entry in enumerate(getattr(org, list_name)):
                where[entry.id] = (("organisations", oi, list_name, ei), org.id)
        records = await conn.fetch(
            f"SELECT t.id, t.organisation_id FROM {table} t"
            " JOIN unnest($1::text[], $2::text[]) AS f(id, organisation_id) ON f.id = t.id"
            " WHERE t.organisation_id <> f.organisation_id ORDER BY t.id",
            list(where),
            [org for _, org in where.values()],
        )
        for record in records:
            loc, org_id = where[record["id"]]
            problems.append(
                f"{_path(loc)} (id '{record['id']}'): {kind} '{record['id']}' already belongs to"
                f" organisation '{record['organisation_id']}' in the database; ids never move"
                f" between organisations (remove it there first, or choose another id for"
                f" '{org_id}')"
            )
    return problems


async def _upsert(conn: Conn, sql: str, *columns: list[Any]) -> TableCounts:
    record = await conn.fetchrow(sql, *columns)
    assert record is not None
    return TableCounts(inserted=record["inserted"], updated=record["updated"])


async def _count(conn: Conn, sql: str, *args: Any) -> int:
    value = await conn.fetchval(sql, *args)
    return int(value or 0)


# Each upsert counts from one snapshot: `existing` is read before the insert in the same
# statement, so a key in `existing` that comes back from RETURNING was updated, others inserted.
# The IS DISTINCT FROM guards make an unchanged row come back not at all (no write, no updated_at).

_UPSERT_ORGANISATIONS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        AS i(id, name, policy, teams_webhook_url)
),
existing AS (SELECT o.id FROM organisations o JOIN input USING (id)),
written AS (
    INSERT INTO organisations AS t (id, name, policy, teams_webhook_url)
    SELECT id, name, policy::jsonb, teams_webhook_url FROM input
    ON CONFLICT (id) DO UPDATE
        SET name = EXCLUDED.name, policy = EXCLUDED.policy,
            teams_webhook_url = EXCLUDED.teams_webhook_url, updated_at = now()
        WHERE (t.name, t.policy, t.teams_webhook_url)
              IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.policy, EXCLUDED.teams_webhook_url)
    RETURNING t.id
)
SELECT count(*) FILTER (WHERE id NOT IN (SELECT id FROM existing)) AS inserted,
       count(*) FILTER (WHERE id IN (SELECT id FROM existing)) AS updated
FROM written
"""

_UPSERT_UNITS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS i(id, organisation_id, parent_id, name, teams_webhook_url)
),
existing AS (SELECT u.id FROM units u JOIN input USING (id)),
written AS (
    INSERT INTO units AS t (id, organisation_id, parent_id, name, teams_webhook_url)
    SELECT id, organisation_id, parent_id, name, teams_webhook_url FROM input
    ON CONFLICT (id) DO UPDATE
        SET parent_id = EXCLUDED.parent_id, name = EXCLUDED.name,
            teams_webhook_url = EXCLUDED.teams_webhook_url, updated_at = now()
        WHERE t.organisation_id = EXCLUDED.organisation_id
          AND (t.parent_id, t.name, t.teams_webhook_url)
              IS DISTINCT FROM (EXCLUDED.parent_id, EXCLUDED.name, EXCLUDED.teams_webhook_url)
    RETURNING t.id
)
SELECT count(*) FILTER (WHERE id NOT IN (SELECT id FROM existing)) AS inserted,
       count(*) FILTER (WHERE id IN (SELECT id FROM existing)) AS updated
FROM written
"""

_UPSERT_PEOPLE = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[])
        AS i(id, organisation_id, name, email, locale, admin)
),
existing AS (SELECT p.id FROM people p JOIN input USING (id)),
written AS (
    INSERT INTO people AS t (id, organisation_id, name, email, locale, admin)
    SELECT id, organisation_id, name, email, locale, admin FROM input
    ON CONFLICT (id) DO UPDATE
        SET name = EXCLUDED.name, email = EXCLUDED.email, locale = EXCLUDED.locale,
            admin = EXCLUDED.admin, updated_at = now()
        WHERE t.organisation_id = EXCLUDED.organisation_id
          AND (t.name, t.email, t.locale, t.admin)
              IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.email, EXCLUDED.locale, EXCLUDED.admin)
    RETURNING t.id
)
SELECT count(*) FILTER (WHERE id NOT IN (SELECT id FROM existing)) AS inserted,
       count(*) FILTER (WHERE id IN (SELECT id FROM existing)) AS updated
FROM written
"""

_UPSERT_SUBSTITUTES = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::date[])
        AS i(leader_id, substitute_id, valid_from, valid_to)
),
existing AS (
    SELECT s.leader_id, s.substitute_id, s.valid_from
    FROM substitutes s JOIN input USING (leader_id, substitute_id, valid_from)
),
written AS (
    INSERT INTO substitutes AS t (leader_id, substitute_id, valid_from, valid_to)
    SELECT leader_id, substitute_id, valid_from, valid_to FROM input
    ON CONFLICT (leader_id, substitute_id, valid_from) DO UPDATE
        SET valid_to = EXCLUDED.valid_to
        WHERE t.valid_to IS DISTINCT FROM EXCLUDED.valid_to
    RETURNING t.leader_id, t.substitute_id, t.valid_from
)
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM existing e
           WHERE (e.leader_id, e.substitute_id, e.valid_from)
               = (w.leader_id, w.substitute_id, w.valid_from))) AS inserted,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM existing e
           WHERE (e.leader_id, e.substitute_id, e.valid_from)
               = (w.leader_id, w.substitute_id, w.valid_from))) AS updated
FROM written w
"""

_UPSERT_WEBHOOKS = """
WITH input AS (
    SELECT i.organisation_id, i.id, i.url, i.secret,
           ARRAY(SELECT json_array_elements_text(i.events::json)) AS events, i.active
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[])
        AS i(organisation_id, id, url, secret, events, active)
),
existing AS (
    SELECT w.organisation_id, w.id
    FROM webhook_subscriptions w JOIN input USING (organisation_id, id)
),
written AS (
    INSERT INTO webhook_subscriptions AS t (organisation_id, id, url, secret, events, active)
    SELECT organisation_id, id, url, secret, events, active FROM input
    ON CONFLICT (organisation_id, id) DO UPDATE
        SET url = EXCLUDED.url, secret = EXCLUDED.secret, events = EXCLUDED.events,
            active = EXCLUDED.active, updated_at = now()
        WHERE (t.url, t.secret, t.events, t.active)
              IS DISTINCT FROM (EXCLUDED.url, EXCLUDED.secret, EXCLUDED.events, EXCLUDED.active)
    RETURNING t.organisation_id, t.id
)
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM existing e
           WHERE (e.organisation_id, e.id) = (w.organisation_id, w.id))) AS inserted,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM existing e
           WHERE (e.organisation_id, e.id) = (w.organisation_id, w.id))) AS updated
FROM written w
"""

_DELETE_WEBHOOKS = """
WITH gone AS (
    DELETE FROM webhook_subscriptions w
    WHERE w.organisation_id = ANY($1::text[])
      AND NOT EXISTS (
          SELECT 1 FROM unnest($2::text[], $3::text[]) AS k(organisation_id, id)
          WHERE (k.organisation_id, k.id) = (w.organisation_id, w.id))
    RETURNING 1
)
SELECT count(*) FROM gone
"""

_INSERT_LEADERS = """
WITH written AS (
    INSERT INTO unit_leaders (unit_id, person_id)
    SELECT * FROM unnest($1::text[], $2::text[])
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) AS inserted, 0 AS updated FROM written
"""

_INSERT_MEMBERS = _INSERT_LEADERS.replace("unit_leaders", "unit_members")

# Link rows are in scope when either end belongs to an organisation in the file.

_DELETE_LEADERS = """
WITH gone AS (
    DELETE FROM unit_leaders l
    WHERE (l.unit_id IN (SELECT id FROM units WHERE organisation_id = ANY($1::text[]))
           OR l.person_id IN (SELECT id FROM people WHERE organisation_id = ANY($1::text[])))
      AND NOT EXISTS (
          SELECT 1 FROM unnest($2::text[], $3::text[]) AS k(unit_id, person_id)
          WHERE k.unit_id = l.unit_id AND k.person_id = l.person_id)
    RETURNING 1
)
SELECT count(*) FROM gone
"""

_DELETE_MEMBERS = _DELETE_LEADERS.replace("unit_leaders", "unit_members")

_DELETE_SUBSTITUTES = """
WITH gone AS (
    DELETE FROM substitutes s
    WHERE (s.leader_id IN (SELECT id FROM people WHERE organisation_id = ANY($1::text[]))
           OR s.substitute_id IN (SELECT id FROM people WHERE organisation_id = ANY($1::text[])))
      AND NOT EXISTS (
          SELECT 1 FROM unnest($2::text[], $3::text[], $4::date[])
              AS k(leader_id, substitute_id, valid_from)
          WHERE (k.leader_id, k.substitute_id, k.valid_from)
              = (s.leader_id, s.substitute_id, s.valid_from))
    RETURNING 1
)
SELECT count(*) FROM gone
"""

_DELETE_UNITS = """
WITH gone AS (
    DELETE FROM units
    WHERE organisation_id = ANY($1::text[]) AND NOT (id = ANY($2::text[]))
    RETURNING 1
)
SELECT count(*) FROM gone
"""

_DELETE_PEOPLE = _DELETE_UNITS.replace("units", "people")
