"""Who acts on whose behalf, and Idempotency-Key: a retried POST answers the same and acts once."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api_fixtures import Api, api_fixture, api_server_fixture  # noqa: F401
from tests.factory import FAST_POLICY, make_org, proposal_for


async def test_substitute_approves_on_behalf_in_their_period_only(api: Api) -> None:
    day = await api.today()
    org = await make_org(
        api.pool,
        FAST_POLICY,
        substitutes=[
            {
                "leader": "lead_a",
                "substitute": "deputy",
                "from": day,
                "to": day.replace(year=day.year + 1),
            },
            {
                "leader": "lead_b",
                "substitute": "outsider",
                "from": day.replace(year=day.year - 2),
                "to": day.replace(year=day.year - 1),
            },
        ],
    )
    async with (
        api.client(org.proposer, org) as proposer,
        api.client(org.deputy, org) as deputy,
        api.client(org.outsider, org) as former_substitute,
    ):
        trial = await proposer.propose(org, day)
        url = f"/trials/{trial['trial_id']}"

        response = await former_substitute.post(
            f"{url}/approvals", json={"decision": "approve"}, expect=403
        )
        assert "their substitutes in their period" in response.json()["detail"]

        inbox = (await deputy.get("/inbox")).json()
        assert [(i["trial_id"], i["why"]) for i in inbox["approvals"]] == [
            (trial["trial_id"], f"waiting for your approval; you are substitute for {org.lead_a}")
        ]

        view = (await deputy.post(f"{url}/approvals", json={"decision": "approve"})).json()
        assert view["phase"] == "running"
        assert view["approvals"][0]["person_id"] == org.deputy
        assert view["approvals"][0]["on_behalf_of"] == org.lead_a

        events = (await deputy.get(f"{url}/events")).json()["items"]
        given = [e for e in events if e["kind"] == "approval_given"]
        assert [(e["actor_id"], e["on_behalf_of"]) for e in given] == [(org.deputy, org.lead_a)]
        assert (await deputy.get("/inbox")).json()["approvals"] == []


async def test_leader_who_is_also_a_substitute_acts_in_their_own_name(api: Api) -> None:
    day = await api.today()
    org = await make_org(
        api.pool,
        {**FAST_POLICY, "required_approvals": 2},
        substitutes=[
            {"leader": "lead_a", "substitute": "lead_b", "from": day, "to": day},
        ],
    )
    async with api.client(org.proposer, org) as proposer, api.client(org.lead_b, org) as lead_b:
        trial = await proposer.propose(org, day)
        view = (
            await lead_b.post(
                f"/trials/{trial['trial_id']}/approvals", json={"decision": "approve"}
            )
        ).json()
        assert [(a["person_id"], a["on_behalf_of"]) for a in view["approvals"]] == [
            (org.lead_b, None)
        ]


async def test_same_key_twice_answers_the_same_and_acts_once(api: Api) -> None:
    org = await make_org(api.pool, {**FAST_POLICY, "required_approvals": 2})
    day = await api.today()
    body = proposal_for(org, day, title="Idempotent forslag").model_dump(mode="json")
    async with api.client(org.proposer, org) as proposer, api.client(org.lead_a, org) as lead:
        key = {"Idempotency-Key": "propose-1"}
        first = await proposer.post("/trials", json=body, headers=key, expect=201)
        again = await proposer.post("/trials", json=body, headers=key, expect=201)
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        trial_id = first.json()["trial_id"]
        listed = (await proposer.get("/trials", params={"q": "idempotent forslag"})).json()
        assert [t["trial_id"] for t in listed["items"]] == [trial_id]

        url = f"/trials/{trial_id}/approvals"
        key = {"Idempotency-Key": "approve-1"}
        approval = {"decision": "approve", "comment": "Fint"}
        first = await lead.post(url, json=approval, headers=key)
        again = await lead.post(url, json=approval, headers=key)
        assert again.json() == first.json()
        assert len(first.json()["approvals"]) == 1
        assert await lead.kinds(trial_id) == ["proposed", "approval_given"]

        # without a key the same approval is a new command, and the workflow refuses it
        response = await lead.post(url, json=approval, expect=409)
        assert "already approved" in response.json()["detail"]

        # the same key for a different request is refused, whatever the path
        response = await lead.post(
            url, json={"decision": "approve", "comment": "Andet"}, headers=key, expect=422
        )
        assert "already used for a different request" in response.json()["detail"]
        response = await lead.post(f"/trials/{trial_id}/pause", json={}, headers=key, expect=422)
        assert f"(POST /api/v1/trials/{trial_id}/approvals)" in response.json()["detail"]

        # keys belong to their caller: another person's same key is their own
        async with api.client(org.lead_b, org) as lead_b:
            view = (await lead_b.post(url, json=approval, headers=key)).json()
        assert view["phase"] == "running"


async def test_refusal_is_the_stored_first_answer(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    day = await api.today()
    async with api.client(org.proposer, org) as proposer:
        trial = await proposer.propose(org, day)
        url = f"/trials/{trial['trial_id']}/check-ins"
        key = {"Idempotency-Key": "check-in-too-early"}
        first = await proposer.post(url, json={"note": "x"}, headers=key, expect=409)
        again = await proposer.post(url, json={"note": "x"}, headers=key, expect=409)
        assert again.json() == first.json()


async def test_concurrent_retries_act_once(api: Api) -> None:
    org = await make_org(api.pool, {**FAST_POLICY, "required_approvals": 2})
    day = await api.today()
    body = proposal_for(org, day, title="Samtidige forsøg").model_dump(mode="json")
    async with api.client(org.proposer, org) as proposer, api.client(org.lead_a, org) as lead:
        key = {"Idempotency-Key": "race-propose"}
        answers = await asyncio.gather(
            *(proposer.post("/trials", json=body, headers=key, expect=201) for _ in range(3))
        )
        ids = {a.json()["trial_id"] for a in answers}
        assert len(ids) == 1
        [trial_id] = ids
        listed = (await proposer.get("/trials", params={"q": "samtidige"})).json()["items"]
        assert [t["trial_id"] for t in listed] == [trial_id]

        url = f"/trials/{trial_id}/approvals"
        key = {"Idempotency-Key": "race-approve"}
        approval: dict[str, Any] = {"decision": "approve"}
        answers = await asyncio.gather(
            *(lead.post(url, json=approval, headers=key) for _ in range(3))
        )
        assert all(len(a.json()["approvals"]) == 1 for a in answers)
        assert await lead.kinds(trial_id) == ["proposed", "approval_given"]
        workflow_id = answers[0].json()["workflow_id"]
        assert await accepted_updates_named(api, workflow_id, "decide_approval") == 1


async def accepted_updates_named(api: Api, workflow_id: str, name: str) -> int:
    """How many updates of this name made it into the workflow's history."""
    history = await api.env.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        1
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == name
    )
