"""DigestWorkflow, started every Monday at 07:00 Copenhagen time by a Temporal Schedule.

The workflow is a thin, deterministic shell: it names the ISO week from workflow time and runs the
activity that enqueues each leader's digest; the dispatcher sends them. Running it twice in a week
sends nothing new (the outbox rows are keyed per leader and week).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.notification_activities import NotificationActivities
    from schemas.notifications import DigestRequest, DigestResult, DigestRun
    from workflows.calendar import BusinessCalendar

DIGEST_SCHEDULE_ID = "provehandling-weekly-digest"
DIGEST_WORKFLOW_ID = "provehandling-weekly-digest"
DIGEST_TIME_ZONE = "Europe/Copenhagen"


@workflow.defn(name="DigestWorkflow")
class DigestWorkflow:
    @workflow.run
    async def run(self, run: DigestRun) -> DigestResult:
        """A manual run may name the week ("2026-W03") and organisations; the schedule does not."""
        day = BusinessCalendar.today(workflow.now())
        year, number, _ = day.isocalendar()
        request = DigestRequest(
            week=run.week or f"{year}-W{number:02d}", on=day, organisations=run.organisations
        )
        return await workflow.execute_activity_method(
            NotificationActivities.send_weekly_digests,
            request,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=5),
                maximum_interval=timedelta(minutes=5),
                maximum_attempts=20,
            ),
        )


def digest_schedule(task_queue: str) -> Schedule:
    """Mondays 07:00 Europe/Copenhagen; a run still going when the next is due is not doubled."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DigestWorkflow.run,
            DigestRun(),
            id=DIGEST_WORKFLOW_ID,
            task_queue=task_queue,
            execution_timeout=timedelta(hours=6),
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_week=[ScheduleRange(1)],
                    hour=[ScheduleRange(7)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                    comment="weekly digest: Monday 07:00",
                )
            ],
            time_zone_name=DIGEST_TIME_ZONE,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_digest_schedule(
    client: Client, task_queue: str, schedule_id: str = DIGEST_SCHEDULE_ID
) -> None:
    """Create the weekly digest schedule, or bring an existing one up to date; safe to repeat."""
    schedule = digest_schedule(task_queue)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)
