"""The same command twice with one Idempotency-Key, and two leaders approving at once: one effect
each time, and each answer says what happened."""

from __future__ import annotations

import asyncio

from tests.api_fixtures import Api, api_fixture, api_server_fixture  # noqa: F401
from tests.factory import FAST_POLICY, make_org


async def test_two_leaders_approving_at_the_same_moment(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)  # one approval is the quorum
    async with api.client(org.proposer, org) as proposer:
        trial = await proposer.propose(org, await api.today())
    tid = trial["trial_id"]
    async with api.client(org.lead_a, org) as lead_a, api.client(org.lead_b, org) as lead_b:
        answers = await asyncio.gather(
            lead_a.post(f"/trials/{tid}/approvals", json={"decision": "approve"}, expect=None),
            lead_b.post(f"/trials/{tid}/approvals", json={"decision": "approve"}, expect=None),
        )
        kinds = await lead_a.kinds(tid)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()
    assert "running" in refused["detail"]  # the loser learns the trial is already running
    assert kinds.count("approval_given") == 1 and kinds.count("approved") == 1


async def test_one_idempotency_key_sent_twice_at_once(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    async with api.client(org.proposer, org) as proposer:
        trial = await proposer.propose(org, await api.today())
    tid = trial["trial_id"]
    async with api.client(org.part1, org) as participant, api.client(org.lead_a, org) as leader:
        await leader.post(f"/trials/{tid}/approvals", json={"decision": "approve"})
        body = {"note": "Samme statusmelding", "measures": {"overlevering": 12}}
        headers = {"Idempotency-Key": "statusmelding-uge-1"}
        answers = await asyncio.gather(
            *(
                participant.post(f"/trials/{tid}/check-ins", json=body, headers=headers)
                for _ in range(2)
            )
        )
        kinds = await participant.kinds(tid)
    assert [a.json()["check_ins"] for a in answers] == [1, 1]
    assert kinds.count("checked_in") == 1
