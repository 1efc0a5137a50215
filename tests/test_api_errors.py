"""Every error class of the API: status, JSON body and a detail that names the rule."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from tests.api_fixtures import Api, api_fixture, api_server_fixture  # noqa: F401
from tests.factory import FAST_POLICY, make_org, proposal_for


def _detail(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) <= {"detail", "kind", "field"}, body
    return body["detail"]


async def test_missing_and_bad_tokens_are_401(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    other = await make_org(api.pool, FAST_POLICY)
    async with api.client() as anonymous:
        response = await anonymous.get("/trials", expect=401)
        assert "missing bearer token" in _detail(response)
        assert response.headers["www-authenticate"].startswith("Bearer")
        response = await anonymous.get(
            "/trials", headers={"Authorization": "Basic dXNlcjpwYXNz"}, expect=401
        )
        assert "missing bearer token" in _detail(response)
        response = await anonymous.post("/trials", json={}, expect=401)

        claims = {"sub": org.proposer, "org": org.id, "exp": 4_000_000_000}
        forged = jwt.encode(claims, "another-secret-of-sufficient-length-32b", algorithm="HS256")
        response = await anonymous.get(
            "/trials", headers={"Authorization": f"Bearer {forged}"}, expect=401
        )
        assert _detail(response) == "invalid token: Signature verification failed"

        response = await anonymous.get(
            "/trials", headers={"Authorization": "Bearer not.a.jwt"}, expect=401
        )
        assert _detail(response).startswith("invalid token:")

        expired = create_token(api.settings, org.proposer, org.id, ttl=timedelta(minutes=-5))
        response = await anonymous.get(
            "/trials", headers={"Authorization": f"Bearer {expired}"}, expect=401
        )
        assert _detail(response) == "invalid token: Signature has expired"

        no_org = jwt.encode(
            {"sub": org.proposer, "exp": 4_000_000_000}, api.settings.jwt_secret, "HS256"
        )
        response = await anonymous.get(
            "/trials", headers={"Authorization": f"Bearer {no_org}"}, expect=401
        )
        assert "org" in _detail(response)

        for person, organisation in (
            ("nobody.at.all", org.id),  # not in the directory
            (org.proposer, other.id),  # in the directory, but of another organisation
        ):
            response = await anonymous.get(
                "/inbox", headers=api.headers(person, organisation), expect=401
            )
            assert _detail(response) == (
                "invalid token: its person is not in the directory of its organisation"
            )


async def test_refusals_name_the_rule(api: Api, env: WorkflowEnvironment) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    day = await api.today()
    async with (
        api.client(org.proposer, org) as proposer,
        api.client(org.part1, org) as part1,
        api.client(org.outsider, org) as outsider,
    ):
        trial = await proposer.propose(org, day)
        url = f"/trials/{trial['trial_id']}"

        response = await proposer.post(f"{url}/approvals", json={"decision": "approve"}, expect=403)
        body = response.json()
        assert body["kind"] == "Forbidden" and body["field"] == "actor"
        assert body["detail"].startswith("actor: no self-approval: the proposer cannot approve")

        response = await part1.post(f"{url}/approvals", json={"decision": "approve"}, expect=403)
        assert "only leaders of the trial's unit" in _detail(response)

        response = await part1.post(f"{url}/check-ins", json={"note": "for tidligt"}, expect=409)
        assert response.json()["kind"] == "PhaseConflict"
        assert _detail(response) == (
            "phase: cannot check in on a trial that is proposed; allowed when running"
        )

        response = await outsider.post(
            "/trials",
            json=proposal_for(org, day).model_dump(mode="json"),
            expect=403,
        )
        assert "you can only propose for a unit you belong to" in _detail(response)

        too_long = proposal_for(org, day).model_dump(mode="json")
        too_long["planned_duration"] = "13 weeks"
        response = await proposer.post("/trials", json=too_long, expect=422)
        assert response.json()["kind"] == "InvalidCommand"
        assert response.json()["field"] == "proposal.planned_duration"
        assert "maximum trial length of 12 weeks" in _detail(response)

        # nothing of the refused commands reached the audit trail
        assert await proposer.kinds(trial["trial_id"]) == ["proposed"]


async def test_invalid_bodies_are_422_with_field_errors(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    day = await api.today()
    async with api.client(org.proposer, org) as proposer, api.client(org.lead_a, org) as lead:
        trial = await proposer.propose(org, day)
        url = f"/trials/{trial['trial_id']}"

        response = await proposer.post(
            f"{url}/evaluations",
            json={"worked": "maybe", "effect": "", "effort": 9, "value": 3},
            expect=422,
        )
        errors = _detail(response)
        by_field = {tuple(e["loc"]): e for e in errors}
        assert set(by_field) == {
            ("body", "worked"),
            ("body", "effect"),
            ("body", "effort"),
            ("body", "prediction_held"),
        }
        assert by_field[("body", "effort")]["msg"] == "Input should be less than or equal to 5"

        response = await lead.post(f"{url}/approvals", json={"decision": "reject"}, expect=422)
        [error] = _detail(response)
        assert (
            error["loc"] == ["body"]
            and error["msg"] == "Value error, a comment is required to reject"
        )

        response = await lead.post(
            f"{url}/approvals",
            json={"decision": "approve", "actor": {"person_id": "x"}},
            expect=422,
        )
        assert [e["loc"] for e in _detail(response)] == [["body", "actor"]]

        response = await proposer.post(
            "/trials",
            content=b"{not json",
            headers={"content-type": "application/json"},
            expect=422,
        )
        assert _detail(response)[0]["type"] == "json_invalid"

        response = await lead.get("/trials", params={"limit": 0}, expect=422)
        assert _detail(response)[0]["loc"] == ["query", "limit"]
        response = await lead.get("/trials", params={"cursor": "garbage"}, expect=422)
        assert response.json()["field"] == "cursor"
        response = await lead.get("/trials/not-a-uuid", expect=422)
        assert _detail(response)[0]["loc"] == ["path", "trial_id"]


async def test_unknown_and_foreign_trials_are_the_same_404(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    other = await make_org(api.pool, FAST_POLICY)
    day = await api.today()
    async with (
        api.client(org.proposer, org) as proposer,
        api.client(other.lead_a, other) as stranger,
    ):
        trial = await proposer.propose(org, day)
        for trial_id in (str(uuid.uuid4()), trial["trial_id"]):
            answers = [
                await stranger.get(f"/trials/{trial_id}", expect=404),
                await stranger.get(f"/trials/{trial_id}/events", expect=404),
                await stranger.post(
                    f"/trials/{trial_id}/approvals", json={"decision": "approve"}, expect=404
                ),
                await stranger.post(f"/trials/{trial_id}/withdraw", expect=404),
            ]
            for response in answers:
                assert response.json() == {"detail": "trial not found", "kind": "NotFound"}
        listed = (await stranger.get("/trials")).json()["items"]
        assert trial["trial_id"] not in [t["trial_id"] for t in listed]
        assert await proposer.kinds(trial["trial_id"]) == ["proposed"]


async def test_ended_trial_takes_no_commands(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    day = await api.today()
    async with api.client(org.proposer, org) as proposer, api.client(org.lead_b, org) as lead:
        trial = await proposer.propose(org, day)
        url = f"/trials/{trial['trial_id']}"
        view = (
            await lead.post(f"{url}/approvals", json={"decision": "reject", "comment": "Ikke nu"})
        ).json()
        assert view["phase"] == "rejected" and view["closed"]
        response = await lead.post(f"{url}/approvals", json={"decision": "approve"}, expect=409)
        assert "rejected" in _detail(response)
