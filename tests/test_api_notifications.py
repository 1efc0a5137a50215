"""GET /api/v1/trials/{id}/notifications: each delivery's fate, failures included."""

from __future__ import annotations

from notifications.channels import Channels
from notifications.dispatcher import Dispatcher
from tests.api_fixtures import Api, api_fixture, api_server_fixture  # noqa: F401
from tests.factory import FAST_POLICY, make_org
from tests.helpers import free_port


async def test_notifications_show_pending_then_failed_and_stay_in_the_tenant(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    other = await make_org(api.pool, FAST_POLICY)
    async with api.client(org.proposer, org) as proposer:
        created = await proposer.propose(org, await api.today())
        trial_id = created["trial_id"]
        listed = (await proposer.get(f"/trials/{trial_id}/notifications")).json()
    deliveries = {(d["recipient_id"], d["kind"], d["channel"]): d for d in listed["items"]}
    assert set(deliveries) == {
        (org.lead_a, "approval_requested", "email"),
        (org.lead_b, "approval_requested", "email"),
    }
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in deliveries.values())

    # SMTP that never answers: after its one allowed attempt each delivery is failed, not lost
    settings = api.settings.model_copy(update={"smtp_port": free_port()})
    channels = Channels.from_settings(settings)
    try:
        dispatcher = Dispatcher(
            api.pool, settings, channels, max_attempts=1, organisations=[org.id]
        )
        await dispatcher.drain_once()
    finally:
        await channels.aclose()
    async with api.client(org.lead_a, org) as leader:
        after = (await leader.get(f"/trials/{trial_id}/notifications")).json()["items"]
    assert {d["status"] for d in after} == {"failed"}
    assert all(d["attempts"] == 1 and d["last_error"] for d in after)
    assert dispatcher.stats.counts[("email", "failed")] == 2

    async with api.client(other.lead_a, other) as stranger:
        await stranger.get(f"/trials/{trial_id}/notifications", expect=404)
