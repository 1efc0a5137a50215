"""Changed versions of TrialWorkflow, to show what replay catches and what patching allows."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.trial import TrialStart, TrialView
    from workflows.trial import TrialWorkflow


@workflow.defn(name="TrialWorkflow")
class UnpatchedChange(TrialWorkflow):
    """Adds a timer before the trial opens, without a patch: old histories must not replay."""

    @workflow.run
    async def run(self, start: TrialStart) -> TrialView:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)


@workflow.defn(name="TrialWorkflow")
class PatchedChange(TrialWorkflow):
    """The same change behind workflow.patched: old histories take the old path and replay."""

    @workflow.run
    async def run(self, start: TrialStart) -> TrialView:
        if workflow.patched("settle-before-opening"):
            await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)
