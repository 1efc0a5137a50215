"""Builds a fresh organisation per test, so tests never share people, units or policy.

Tree: top (director) > area (area_chief) > team (lead_a, lead_b) and other (other_lead).
The proposer and two participants belong to team; outsider belongs to other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from schemas.directory import DirectoryFile, Organisation, Person, Substitute, Unit
from schemas.duration import Duration
from schemas.policy import Policy
from schemas.proposal import Measure, Proposal
from store.directory import load_directory

# Fast policy for lifecycles that must also run on the dev server in real time.
FAST_POLICY: dict[str, Any] = {
    "approval_sla": "1 hours",
    "reminder_after": "30 minutes",
    "escalation_interval": "1 hours",
    "stall_after": "1 hours",
    "evaluation_sla": "1 hours",
    "decision_sla": "1 hours",
    "follow_up_after": "2 seconds",
    "max_trial_length": "12 weeks",
}


@dataclass
class TestOrg:
    id: str
    top: str
    area: str
    team: str
    other: str
    director: str
    area_chief: str
    lead_a: str
    lead_b: str
    other_lead: str
    proposer: str
    part1: str
    part2: str
    outsider: str
    deputy: str
    policy: Policy
    people: list[Person] = field(default_factory=list)

    __test__ = False  # not a test class, despite the name


def directory_for(
    policy: dict[str, Any] | None = None,
    substitutes: list[dict[str, Any]] | None = None,
    area_has_leader: bool = True,
) -> tuple[DirectoryFile, TestOrg]:
    o = f"o{uuid.uuid4().hex[:8]}"
    ids = {
        name: f"{o}.{name.replace('_', '-')}"
        for name in (
            "director",
            "area_chief",
            "lead_a",
            "lead_b",
            "other_lead",
            "proposer",
            "part1",
            "part2",
            "outsider",
            "deputy",
        )
    }
    units = {"top": f"{o}.top", "area": f"{o}.area", "team": f"{o}.team", "other": f"{o}.other"}
    home = {
        "director": "top",
        "area_chief": "area",
        "lead_a": "team",
        "lead_b": "team",
        "other_lead": "other",
        "proposer": "team",
        "part1": "team",
        "part2": "team",
        "outsider": "other",
        "deputy": "team",
    }
    people = [
        Person(
            id=pid,
            name=f"Testperson {name.title()} {o[-4:]}",
            email=f"{name.replace('_', '.')}.{o}@kommune.example",
            locale="da",
            units=[units[home[name]]],
        )
        for name, pid in ids.items()
    ]
    resolved_policy = Policy.model_validate(policy or {})
    organisation = Organisation(
        id=o,
        name=f"Testkommune {o}",
        policy=resolved_policy,
        units=[
            Unit(id=units["top"], name="Direktion", leaders=[ids["director"]]),
            Unit(
                id=units["area"],
                name="Sundhed",
                parent=units["top"],
                leaders=[ids["area_chief"]] if area_has_leader else [],
            ),
            Unit(
                id=units["team"],
                name="Hjemmepleje Nord",
                parent=units["area"],
                leaders=[ids["lead_a"], ids["lead_b"]],
            ),
            Unit(
                id=units["other"],
                name="Plejecenter",
                parent=units["area"],
                leaders=[ids["other_lead"]],
            ),
        ],
        people=people,
        substitutes=[
            Substitute.model_validate(
                {**s, "leader": ids[s["leader"]], "substitute": ids[s["substitute"]]}
            )
            for s in substitutes or []
        ],
    )
    org = TestOrg(
        id=o,
        **units,
        **ids,
        policy=resolved_policy,
        people=people,
    )
    return DirectoryFile(organisations=[organisation]), org


async def make_org(
    pool: asyncpg.Pool,
    policy: dict[str, Any] | None = None,
    substitutes: list[dict[str, Any]] | None = None,
    area_has_leader: bool = True,
) -> TestOrg:
    directory, org = directory_for(policy, substitutes, area_has_leader)
    await load_directory(pool, directory)
    return org


def proposal_for(org: TestOrg, start: date, **overrides: Any) -> Proposal:
    data: dict[str, Any] = {
        "title": "Morgenhuddle på ti minutter",
        "problem": "Overleveringen ved vagtskifte tager for lang tid.",
        "change": "Stående huddle kl. 7.45 med fast dagsorden.",
        "question": "Bliver overleveringen kortere uden tab af information?",
        "prediction": "Fra 25 til 15 minutter.",
        "success_criteria": "Under 15 minutter fire af fem dage.",
        "measures": [Measure(name="overlevering", unit="minutter", better="lower")],
        "participants": [org.part1, org.part2],
        "unit_id": org.team,
        "planned_start": start,
        "planned_duration": Duration.model_validate("2 weeks"),
    }
    data.update(overrides)
    return Proposal.model_validate(data)
