"""The whole lifecycle through the HTTP API, on both servers, with the read model at each step."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from schemas.trial import Phase
from tests.api_fixtures import (  # noqa: F401
    Api,
    Client,
    api_fixture,
    api_server_fixture,
    wait_for_phase,
    wait_until,
)
from tests.factory import FAST_POLICY, make_org, proposal_for


def _evaluation(worked: str = "yes") -> dict[str, object]:
    return {
        "worked": worked,
        "effect": "Kortere overlevering",
        "effort": 2,
        "value": 4,
        "prediction_held": "partly",
    }


async def test_proposal_to_adoption_and_follow_up(api: Api, env: WorkflowEnvironment) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    proposer = api.client(org.proposer, org)
    lead_a = api.client(org.lead_a, org)
    lead_b = api.client(org.lead_b, org)
    part1 = api.client(org.part1, org)
    part2 = api.client(org.part2, org)
    day = await api.today()

    async def listed(client: Client = lead_a) -> tuple[str, int]:
        """The trial as GET /trials shows it: phase and number of events behind it."""
        [item] = (await client.get("/trials")).json()["items"]
        assert item["trial_id"] == trial_id
        return item["phase"], len(await client.kinds(trial_id))

    async def waiting_in(client: Client, section: str) -> list[str]:
        return [i["trial_id"] for i in (await client.get("/inbox")).json()[section]]

    body = proposal_for(
        org, day, title="Morgenhuddle via API", planned_duration="5 seconds"
    ).model_dump(mode="json")
    created = await proposer.post("/trials", json=body, expect=201)
    view = created.json()
    trial_id = view["trial_id"]
    assert created.headers["location"] == f"/api/v1/trials/{trial_id}"
    assert view["phase"] == "proposed" and view["proposer_id"] == org.proposer
    proposed = (await lead_a.get("/trials", params={"phase": "proposed"})).json()["items"]
    assert [t["trial_id"] for t in proposed] == [trial_id]
    assert proposed[0]["due_at"] == view["deadlines"]["approval_due"]
    assert await waiting_in(lead_a, "approvals") == [trial_id]
    assert await waiting_in(proposer, "approvals") == []

    view = (await lead_a.post(f"/trials/{trial_id}/approvals", json={"decision": "approve"})).json()
    assert view["phase"] == "running"
    assert (await part1.view(trial_id))["phase"] == "running"
    assert await listed(part1) == ("running", 4)  # proposed, approval_given, approved, started
    assert await waiting_in(lead_a, "approvals") == []

    view = (
        await part1.post(
            f"/trials/{trial_id}/check-ins",
            json={"note": "Første uge gik godt", "measures": {"overlevering": 17}},
        )
    ).json()
    assert view["check_ins"] == 1 and view["last_check_in"]["person_id"] == org.part1
    assert await listed() == ("running", 5)

    view = await wait_for_phase(env, proposer, trial_id, Phase.EVALUATING)
    assert await listed() == ("evaluating", 6)
    assert await waiting_in(part2, "evaluations") == [trial_id]
    for client in (proposer, part1):
        view = (await client.post(f"/trials/{trial_id}/evaluations", json=_evaluation())).json()
        assert view["phase"] == "evaluating"
    view = (await part2.post(f"/trials/{trial_id}/evaluations", json=_evaluation("partly"))).json()
    assert view["phase"] == "deciding"
    assert (await lead_b.view(trial_id))["phase"] == "deciding"
    assert await listed() == ("deciding", 10)
    assert await waiting_in(part2, "evaluations") == []
    assert await waiting_in(lead_b, "decisions") == [trial_id]

    view = (
        await lead_b.post(
            f"/trials/{trial_id}/outcome", json={"decision": "adopt", "comment": "Vi fortsætter"}
        )
    ).json()
    assert view["phase"] == "adopted" and view["outcome"]["person_id"] == org.lead_b
    assert await listed() == ("adopted", 11)
    assert await waiting_in(lead_b, "decisions") == []

    async def follow_up_asked() -> bool:
        return (await proposer.view(trial_id))["follow_up"]["requested_at"] is not None

    await wait_until(env, follow_up_asked)
    view = (
        await proposer.post(f"/trials/{trial_id}/follow-up", json={"still_in_use": True})
    ).json()
    assert view["closed"] and view["follow_up"]["still_in_use"] is True

    events = (await lead_a.get(f"/trials/{trial_id}/events")).json()
    assert events["trial_id"] == trial_id
    assert [e["kind"] for e in events["items"]] == [
        "proposed",
        "approval_given",
        "approved",
        "started",
        "checked_in",
        "ended",
        "evaluated",
        "evaluated",
        "evaluated",
        "evaluation_closed",
        "adopted",
        "follow_up_requested",
        "follow_up_answered",
    ]
    assert [e["seq"] for e in events["items"]] == list(range(1, 14))
    by_kind = {e["kind"]: e for e in events["items"]}
    assert by_kind["approval_given"]["actor_id"] == org.lead_a
    assert by_kind["checked_in"]["data"]["measures"] == {"overlevering": 17}
    assert by_kind["adopted"]["actor_id"] == org.lead_b

    final = (await lead_a.get("/trials", params={"phase": "adopted"})).json()["items"]
    assert [(t["trial_id"], t["phase"], t["due_at"]) for t in final] == [
        (trial_id, "adopted", None)
    ]
    for client in (proposer, lead_a, lead_b, part1, part2):
        await client.http.aclose()
