"""`provehandling token` and `provehandling trials list|show` against a real API over HTTP."""

from __future__ import annotations

from pathlib import Path

import jwt

from schemas.commands import ApprovalDecision
from tests.api_fixtures import TEST_SECRET, Api, api_fixture, api_server_fixture  # noqa: F401
from tests.cli_support import cli_env, run_cli
from tests.factory import FAST_POLICY, make_org, proposal_for
from tests.helpers import as_, today
from trial_client.client import TrialClient


async def test_token_prints_a_token_for_a_person_in_the_directory(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    env = cli_env(PROVE_DATABASE_URL=database_url, PROVE_JWT_SECRET=TEST_SECRET)
    result = await run_cli("token", org.lead_a, "--hours", "1", env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == org.lead_a and claims["org"] == org.id
    assert claims["exp"] - claims["iat"] == 3600

    unknown = await run_cli("token", "nobody.here", env=env, cwd=tmp_path)
    assert unknown.code == 2 and "no person 'nobody.here'" in unknown.stderr


async def test_trials_list_and_show_call_the_api(
    api: Api, trials: TrialClient, database_url: str, tmp_path: Path
) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    other = await make_org(api.pool, FAST_POLICY)
    mine = await trials.propose(as_(org.proposer), proposal_for(org, await today(api.env)))
    await trials.command(
        mine.trial_id,
        "decide_approval",
        ApprovalDecision(actor=as_(org.lead_a), decision="approve"),
    )
    theirs = await trials.propose(
        as_(other.proposer), proposal_for(other, await today(api.env), title="Andet forsøg")
    )
    env = cli_env(
        PROVE_DATABASE_URL=database_url, PROVE_JWT_SECRET=TEST_SECRET, PROVE_API_URL=api.base_url
    )

    listed = await run_cli("trials", "list", "--as", org.lead_b, env=env, cwd=tmp_path)
    assert listed.code == 0, listed.stderr
    assert str(mine.trial_id) in listed.stdout and "running" in listed.stdout
    assert str(theirs.trial_id) not in listed.stdout  # another organisation's trial

    filtered = await run_cli(
        "trials", "list", "--as", org.lead_b, "--phase", "proposed", env=env, cwd=tmp_path
    )
    assert filtered.code == 0 and "(no trials)" in filtered.stdout

    shown = await run_cli(
        "trials", "show", str(mine.trial_id), "--as", org.part1, env=env, cwd=tmp_path
    )
    assert shown.code == 0, shown.stderr
    assert "Morgenhuddle på ti minutter  [running, iteration 1]" in shown.stdout
    assert f"proposer    {org.proposer}" in shown.stdout

    hidden = await run_cli(
        "trials", "show", str(theirs.trial_id), "--as", org.part1, env=env, cwd=tmp_path
    )
    assert hidden.code == 1 and "404" in hidden.stderr

    no_token = await run_cli("trials", "list", env=env, cwd=tmp_path)
    assert no_token.code == 1 and "no token" in no_token.stderr
