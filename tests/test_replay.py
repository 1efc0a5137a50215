"""Histories recorded from released versions of TrialWorkflow replay against today's code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.workflow_variants import PatchedChange, UnpatchedChange
from workflows.trial import TrialWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*/*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text(encoding="utf-8"))


def test_histories_are_committed() -> None:
    assert len(HISTORIES) >= 3, "record them with `make record-histories`"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=[TrialWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(_history(path))


async def test_an_unpatched_change_does_not_replay() -> None:
    replayer = Replayer(workflows=[UnpatchedChange], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(_history(HISTORIES[0]), raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, NondeterminismError)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_a_patched_change_replays_old_histories(path: Path) -> None:
    replayer = Replayer(workflows=[PatchedChange], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(_history(path))
