"""Schemathesis over the live OpenAPI document: no 5xx, and answers that match the document.

Schemathesis is synchronous (requests), so it runs in a thread while the API keeps serving in the
tests' event loop. Every operation gets generated valid requests (checked against the documented
statuses, content types and response schemas) and invalid ones (which must never be a 5xx), both
with random trial ids and with the id of a real trial, so commands reach the workflow's validators.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HypothesisPhase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_fixtures import Api, api_fixture, api_server_fixture  # noqa: F401
from tests.factory import FAST_POLICY, make_org

# `make test` keeps it short; `make reliability` asks for 1,000+ requests through these settings.
MAX_EXAMPLES = int(os.environ.get("PROVE_SCHEMATHESIS_EXAMPLES", "20"))
MIN_REQUESTS = int(os.environ.get("PROVE_SCHEMATHESIS_MIN_REQUESTS", "200"))
POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [not_a_server_error, content_type_conformance]


def _exercise(
    strategy: Any, base_url: str, headers: dict[str, str], checks: list[Any], statuses: Counter[int]
) -> None:
    """Send up to MAX_EXAMPLES generated requests and validate each answer."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[HypothesisPhase.explicit, HypothesisPhase.generate],
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)

    run()


def _fuzz(base_url: str, token: str, trial_id: str) -> tuple[list[str], Counter[int]]:
    """Run every operation; returns the failures and the statuses of the answers."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the document has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        variants: list[tuple[GenerationMode, dict[str, Any] | None]] = [
            (GenerationMode.POSITIVE, None),
            (GenerationMode.NEGATIVE, None),
        ]
        if "{trial_id}" in operation.path:
            variants.append((GenerationMode.POSITIVE, {"trial_id": trial_id}))
        for mode, path_parameters in variants:
            checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS
            strategy = operation.as_strategy(mode, path_parameters=path_parameters)
            try:
                _exercise(strategy, base_url, headers, checks, statuses)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (e.g. /healthz)
            except Exception as error:
                label = f"{operation.label} ({mode.value}, trial id {path_parameters or 'random'})"
                failures.append(f"{label}: {error}")
    return failures, statuses


async def test_no_server_errors_and_answers_match_the_document(api: Api) -> None:
    org = await make_org(api.pool, FAST_POLICY)
    async with api.client(org.proposer, org) as proposer:
        trial = await proposer.propose(org, await api.today())
    token = api.token(org.lead_a, org.id)
    failures, statuses = await asyncio.to_thread(_fuzz, api.base_url, token, trial["trial_id"])
    assert not failures, "\n\n".join(failures)
    print(f"schemathesis: {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
    assert sum(statuses.values()) >= MIN_REQUESTS
    assert {200, 404, 422} <= set(statuses)
    assert not any(status >= 500 for status in statuses)
