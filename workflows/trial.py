"""TrialWorkflow: the life of one prøvehandling, from proposal to adoption, in one workflow.

Every command is an Update whose validator refuses what is not allowed before anything reaches
history; every change of state is recorded in PostgreSQL (awaited, so callers read their writes);
every waiting step runs on a movable deadline and an escalation ladder. State is one pydantic model
(TrialView) so continue-as-new carries it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.trial_activities import TrialActivities
    from schemas.commands import (
        Abort,
        Actor,
        ApprovalChoice,
        ApprovalDecision,
        CheckIn,
        Evaluation,
        Extend,
        FollowUpAnswer,
        OutcomeChoice,
        OutcomeDecision,
        Pause,
        Resume,
        Revision,
        Withdraw,
    )
    from schemas.directory import EligibleApprover, EscalationTarget
    from schemas.duration import Duration
    from schemas.errors import RefusalType, RuleViolation
    from schemas.policy import Policy
    from schemas.proposal import Proposal
    from schemas.trial import (
        ApprovalRecord,
        ApproverQuery,
        CheckInRecord,
        EscalationQuery,
        EvaluationRecord,
        EventKind,
        FollowUpRecord,
        IterationSummary,
        NotificationIntent,
        NotificationKind,
        OutcomeRecord,
        Phase,
        RecordEventInput,
        RecordEventsInput,
        Step,
        StepClock,
        TrialEvent,
        TrialStart,
        TrialView,
    )
    from workflows.calendar import BusinessCalendar
    from workflows.rules import check_proposal, eligible_on
    from workflows.search_attributes import (
        TRIAL_ESCALATION_LEVEL,
        TRIAL_ORGANISATION,
        TRIAL_PHASE,
        TRIAL_UNIT,
    )

T = TypeVar("T")

RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[RefusalType.INVALID.value, RefusalType.NOT_FOUND.value],
)
LOOKUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=20),
    non_retryable_error_types=[RefusalType.INVALID.value, RefusalType.NOT_FOUND.value],
)

# The step each phase waits on; its clock drives reminders and escalation.
STEP_OF_PHASE = {
    Phase.PROPOSED: Step.APPROVAL,
    Phase.RUNNING: Step.CHECK_IN,
    Phase.EVALUATING: Step.EVALUATION,
    Phase.DECIDING: Step.DECISION,
}
LEADER_ACTS = "the proposer or an eligible leader"
HANDLED_UPDATES_KEPT = 200  # command ids remembered across continue-as-new


def _refusal(error: RuleViolation) -> ApplicationError:
    return ApplicationError(error.args[0], error.field, type=error.kind.value, non_retryable=True)


def _phase_conflict(command: str, phase: Phase, allowed: Iterable[Phase]) -> RuleViolation:
    names = ", ".join(p.value for p in allowed)
    return RuleViolation(
        "phase",
        f"cannot {command} a trial that is {phase.value}; allowed when {names}",
        RefusalType.PHASE_CONFLICT,
    )


def _forbidden(field: str, message: str) -> RuleViolation:
    return RuleViolation(field, message, RefusalType.FORBIDDEN)


@workflow.defn(name="TrialWorkflow")
class TrialWorkflow:
    @workflow.init
    def __init__(self, start: TrialStart) -> None:
        # State carried by continue-as-new is restored here, before any update handler or
        # validator of the new run can look at it.
        self._state: TrialView | None = start.carried
        self._ready = start.carried is not None
        self._wake = False
        self._continue_as_new = False
        self._lock = asyncio.Lock()
        self._calendar: BusinessCalendar | None = None
        self._history_limit = start.history_event_limit
        self._published: tuple[str, str, str, int] | None = None
        self._unrecorded: list[TrialEvent] = []

    # ------------------------------------------------------------------ run loop

    @workflow.run
    async def run(self, start: TrialStart) -> TrialView:
        if start.carried is None:
            async with self._serialised():
                await self._open_trial(start)
        while not self.s.closed:
            async with self._serialised():
                await self._process_due()
            if self.s.closed:
                break
            if self._continue_as_new or self._history_is_long():
                break
            self._wake = False
            wake_at = self._next_wake_at()
            timeout = None if wake_at is None else (wake_at - workflow.now()).total_seconds()
            if timeout is not None and timeout <= 0:
                continue
            try:
                await workflow.wait_condition(
                    lambda: self._wake or self._continue_as_new,
                    timeout=None if timeout is None else timedelta(seconds=timeout),
                )
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self.s.closed:
            workflow.continue_as_new(
                TrialStart(
                    trial_id=self.s.trial_id,
                    organisation_id=self.s.organisation_id,
                    proposer_id=self.s.proposer_id,
                    proposal=self.s.proposal,
                    carried=self.s,
                    history_event_limit=self._history_limit,
                )
            )
        return self.s

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._history_limit
        )

    @property
    def s(self) -> TrialView:
        assert self._state is not None, "trial state used before the trial was opened"
        return self._state

    @property
    def policy(self) -> Policy:
        return self.s.policy

    @property
    def calendar(self) -> BusinessCalendar:
        if self._calendar is None:
            self._calendar = BusinessCalendar.for_policy(self.policy)
        return self._calendar

    async def _open_trial(self, start: TrialStart) -> None:
        policy = await workflow.execute_local_activity_method(
            TrialActivities.load_policy,
            start.organisation_id,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=LOOKUP_RETRY,
        )
        now = workflow.now()
        self._state = TrialView(
            trial_id=start.trial_id,
            workflow_id=workflow.info().workflow_id,
            organisation_id=start.organisation_id,
            unit_id=start.proposal.unit_id,
            proposer_id=start.proposer_id,
            proposal=start.proposal,
            policy=policy,
            required_approvals=policy.required_approvals,
            created_at=start.submitted_at or now,
            updated_at=now,
        )
        await self._begin_approval(EventKind.PROPOSED, Actor(person_id=start.proposer_id))
        await self._flush()  # recorded before `ready` answers: the proposer reads their write
        self._ready = True

    # ------------------------------------------------------------------ deadlines and ladders

    def _sla_of(self, step: Step) -> Duration:
        return {
            Step.APPROVAL: self.policy.approval_sla,
            Step.CHECK_IN: self.policy.stall_after,
            Step.EVALUATION: self.policy.evaluation_sla,
            Step.DECISION: self.policy.decision_sla,
        }[step]

    def _open_clock(self, step: Step) -> None:
        now = workflow.now()
        self.s.clocks = {step: StepClock(step=step, started_at=now)}
        due = self.calendar.add(now, self._sla_of(step))
        deadlines = self.s.deadlines
        deadlines.approval_due = due if step is Step.APPROVAL else None
        deadlines.check_in_due = due if step is Step.CHECK_IN else None
        deadlines.evaluation_due = due if step is Step.EVALUATION else None
        deadlines.decision_due = due if step is Step.DECISION else None

    def _close_clocks(self) -> None:
        self.s.clocks = {}
        deadlines = self.s.deadlines
        deadlines.approval_due = deadlines.check_in_due = None
        deadlines.evaluation_due = deadlines.decision_due = None

    def _next_rung(self, clock: StepClock) -> tuple[str, datetime] | None:
        """("remind" | "rung", when) for the next thing the step's ladder does, if anything."""
        sla_at = self.calendar.add(clock.started_at, self._sla_of(clock.step))
        if clock.level == 0 and clock.reminded_at is None and self.policy.reminder_after.amount:
            remind_at = self.calendar.add(clock.started_at, self.policy.reminder_after)
            if remind_at < sla_at:
                return "remind", remind_at
        if clock.exhausted:
            return None
        if clock.level == 0:
            return "rung", sla_at
        if clock.level >= self.policy.max_escalation_levels or clock.last_rung_at is None:
            return None
        return "rung", self.calendar.add(clock.last_rung_at, self.policy.escalation_interval)

    def _active_clock(self) -> StepClock | None:
        step = STEP_OF_PHASE.get(self.s.phase)
        return self.s.clocks.get(step) if step else None

    def _next_wake_at(self) -> datetime | None:
        s = self.s
        candidates: list[datetime] = []
        if s.phase is Phase.SCHEDULED and s.deadlines.starts_at:
            candidates.append(s.deadlines.starts_at)
        if s.phase is Phase.RUNNING and s.deadlines.ends_at:
            candidates.append(s.deadlines.ends_at)
        clock = self._active_clock()
        if clock is not None:
            rung = self._next_rung(clock)
            if rung is not None:
                candidates.append(rung[1])
        if s.phase is Phase.ADOPTED and s.follow_up is not None:
            due = self._follow_up_next(s.follow_up)
            if due is not None:
                candidates.append(due)
        return min(candidates) if candidates else None

    def _follow_up_next(self, follow_up: FollowUpRecord) -> datetime | None:
        if follow_up.answered_at or follow_up.closed_unanswered:
            return None
        if follow_up.requested_at is None:
            return follow_up.due_at
        return self.calendar.add(follow_up.requested_at, self.policy.evaluation_sla)

    async def _process_due(self) -> None:
        """Do everything whose time has come, one step at a time, until nothing is due."""
        while not self.s.closed:
            now = workflow.now()
            s = self.s
            if (
                s.phase is Phase.SCHEDULED
                and s.deadlines.starts_at
                and s.deadlines.starts_at <= now
            ):
                await self._start_running()
                continue
            if s.phase is Phase.RUNNING and s.deadlines.ends_at and s.deadlines.ends_at <= now:
                await self._end_running(EventKind.ENDED, None, {})
                continue
            if s.phase is Phase.ADOPTED and s.follow_up is not None:
                due = self._follow_up_next(s.follow_up)
                if due is not None and due <= now:
                    await self._follow_up_due(due)
                    continue
            clock = self._active_clock()
            rung = self._next_rung(clock) if clock else None
            if clock is not None and rung is not None and rung[1] <= now:
                if rung[0] == "remind":
                    await self._remind(clock, rung[1])
                else:
                    await self._climb(clock, rung[1])
                continue
            return

    async def _remind(self, clock: StepClock, due: datetime) -> None:
        clock.reminded_at = due
        kind = {
            Step.APPROVAL: NotificationKind.REMINDER,
            Step.CHECK_IN: NotificationKind.CHECK_IN_REMINDER,
            Step.EVALUATION: NotificationKind.REMINDER,
            Step.DECISION: NotificationKind.REMINDER,
        }[clock.step]
        await self._emit(
            EventKind.REMINDED,
            data={"step": clock.step.value, "due_at": due},
            notify=[(self._responsible(clock.step), kind)],
        )

    def _responsible(self, step: Step) -> list[str]:
        s = self.s
        if step is Step.CHECK_IN:
            return [s.proposer_id, *s.participants]
        if step is Step.EVALUATION:
            done = {e.person_id for e in s.evaluations}
            return [p for p in [s.proposer_id, *s.participants] if p not in done]
        approved: set[str] = set()
        if step is Step.APPROVAL:
            approved = {a.on_behalf_of or a.person_id for a in s.approvals}
        return [p for p in self._leaders_today() if p not in approved and p != s.proposer_id]

    def _leaders_today(self) -> list[str]:
        today = self.calendar.today(workflow.now())
        return [e.person_id for e in self.s.eligible_approvers if e.valid_on(today)]

    async def _climb(self, clock: StepClock, due: datetime) -> None:
        """One rung up the ladder: the step is overdue (first rung) or still waiting."""
        s = self.s
        level = clock.level + 1
        if clock.step is Step.CHECK_IN and level == 1:
            s.stalled = True
            await self._emit(
                EventKind.STALLED,
                data={
                    "since": (s.last_check_in.at if s.last_check_in else clock.started_at),
                    "due_at": due,
                },
                notify=[([s.proposer_id], NotificationKind.STALLED)],
            )
        target: EscalationTarget | None = None
        if level <= self.policy.max_escalation_levels:
            target = await workflow.execute_local_activity_method(
                TrialActivities.resolve_escalation,
                EscalationQuery(
                    organisation_id=s.organisation_id,
                    unit_id=s.unit_id,
                    step=clock.step,
                    level=level,
                    already_visited=clock.escalated_to_units,
                    on=self.calendar.today(due),
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=LOOKUP_RETRY,
            )
        if target is None:
            clock.exhausted = True
            await self._emit(
                EventKind.ESCALATION_EXHAUSTED,
                data={"step": clock.step.value, "level": clock.level, "due_at": due},
            )
        else:
            clock.level = level
            clock.last_rung_at = due
            clock.escalated_to_units.append(target.unit_id)
            for entry in target.recipients:
                self._grant(
                    EligibleApprover(
                        person_id=entry.person_id,
                        via="escalation" if entry.via != "substitute" else "substitute",
                        on_behalf_of=entry.on_behalf_of,
                        valid_from=entry.valid_from,
                        valid_to=entry.valid_to,
                    )
                )
            next_rung = self._next_rung(clock)
            await self._emit(
                EventKind.ESCALATED,
                data={
                    "step": clock.step.value,
                    "level": level,
                    "due_at": due,
                    "unit_id": target.unit_id,
                    "to": [r.person_id for r in target.recipients],
                    "on_behalf_of": [r.on_behalf_of for r in target.recipients],
                    "next_rung_at": next_rung[1] if next_rung else None,
                },
                notify=[([r.person_id for r in target.recipients], NotificationKind.ESCALATION)],
            )
        if clock.step is Step.EVALUATION:
            await self._to_deciding("evaluation_deadline_passed")

    def _grant(self, entry: EligibleApprover) -> None:
        key = (entry.person_id, entry.via, entry.valid_from, entry.valid_to)
        for existing in self.s.eligible_approvers:
            if (existing.person_id, existing.via, existing.valid_from, existing.valid_to) == key:
                return
        self.s.eligible_approvers.append(entry)

    # ------------------------------------------------------------------ transitions

    async def _resolve_approvers(self) -> None:
        """Leaders and substitutes of the unit now; leaders reached by escalation keep their say."""
        s = self.s
        found = await workflow.execute_local_activity_method(
            TrialActivities.resolve_approvers,
            ApproverQuery(
                organisation_id=s.organisation_id,
                unit_id=s.unit_id,
                on=self.calendar.today(workflow.now()),
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=LOOKUP_RETRY,
        )
        s.eligible_approvers = [e for e in s.eligible_approvers if e.via == "escalation"]
        for entry in found:
            self._grant(entry)

    async def _begin_approval(self, kind: EventKind, actor: Actor) -> None:
        s = self.s
        s.phase = Phase.PROPOSED
        s.approvals = []
        s.change_request = None
        await self._resolve_approvers()
        self._open_clock(Step.APPROVAL)
        await self._emit(
            kind,
            actor=actor,
            data={"title": s.proposal.title, "iteration": s.iteration},
            notify=[(self._responsible(Step.APPROVAL), NotificationKind.APPROVAL_REQUESTED)],
        )

    async def _approved(self, actor: Actor) -> None:
        s = self.s
        now = workflow.now()
        starts_at = max(now, self.calendar.local_midnight(s.proposal.planned_start))
        s.deadlines.starts_at = starts_at
        s.phase = Phase.SCHEDULED
        self._close_clocks()
        await self._emit(
            EventKind.APPROVED,
            actor=actor,
            data={"approvals": len(s.approvals), "starts_at": starts_at},
            notify=[([s.proposer_id, *s.participants], NotificationKind.APPROVED)],
        )
        if starts_at <= now:
            await self._start_running()

    async def _start_running(self) -> None:
        s = self.s
        now = workflow.now()
        s.phase = Phase.RUNNING
        s.started_at = now
        s.deadlines.ends_at = self.calendar.add(now, s.proposal.planned_duration)
        self._open_clock(Step.CHECK_IN)
        await self._emit(
            EventKind.STARTED,
            data={"ends_at": s.deadlines.ends_at},
            notify=[([s.proposer_id, *s.participants], NotificationKind.TRIAL_STARTS)],
        )

    async def _end_running(
        self, kind: EventKind, actor: Actor | None, data: dict[str, Any]
    ) -> None:
        s = self.s
        now = workflow.now()
        if s.paused_at is not None:
            s.paused_seconds += (now - s.paused_at).total_seconds()
            s.paused_at = None
        s.ended_at = now
        s.stalled = False
        s.phase = Phase.EVALUATING
        self._open_clock(Step.EVALUATION)
        await self._emit(
            kind,
            actor=actor,
            data=data,
            notify=[
                (self._responsible(Step.EVALUATION), NotificationKind.EVALUATION_REQUESTED),
                (
                    [] if kind is EventKind.ENDED else self._everyone(actor),
                    NotificationKind.ABORTED,
                ),
            ],
        )

    async def _to_deciding(self, reason: str) -> None:
        s = self.s
        missing = self._responsible(Step.EVALUATION)
        await self._resolve_approvers()
        s.phase = Phase.DECIDING
        self._open_clock(Step.DECISION)
        await self._emit(
            EventKind.EVALUATION_CLOSED,
            data={"reason": reason, "missing": missing, "evaluations": len(s.evaluations)},
            notify=[(self._responsible(Step.DECISION), NotificationKind.DECISION_REQUESTED)],
        )

    async def _follow_up_due(self, due: datetime) -> None:
        s = self.s
        assert s.follow_up is not None
        if s.follow_up.requested_at is None:
            s.follow_up.requested_at = due
            await self._emit(
                EventKind.FOLLOW_UP_REQUESTED,
                data={"answer_by": self._follow_up_next(s.follow_up)},
                notify=[([s.proposer_id], NotificationKind.FOLLOW_UP)],
            )
        else:
            s.follow_up.closed_unanswered = True
            s.closed = True
            await self._emit(EventKind.FOLLOW_UP_CLOSED, data={"answered": False})

    def _everyone(self, actor: Actor | None = None) -> list[str]:
        people = [self.s.proposer_id, *self.s.participants]
        return [p for p in people if actor is None or not actor.involves(p)]

    # ------------------------------------------------------------------ recording

    async def _emit(
        self,
        kind: EventKind,
        *,
        actor: Actor | None = None,
        data: dict[str, Any] | None = None,
        notify: list[tuple[list[str], NotificationKind]] | None = None,
    ) -> None:
        """Record one event, the view after it and its notifications; returns once written."""
        s = self.s
        self._publish_search_attributes()
        now = workflow.now()
        s.last_seq += 1
        s.updated_at = now
        intents: list[NotificationIntent] = []
        seen: set[tuple[str, NotificationKind]] = set()
        for recipients, note_kind in notify or []:
            for person_id in recipients:
                if (person_id, note_kind) not in seen:
                    seen.add((person_id, note_kind))
                    intents.append(NotificationIntent(recipient_id=person_id, kind=note_kind))
        event = TrialEvent(
            trial_id=s.trial_id,
            seq=s.last_seq,
            iteration=s.iteration,
            kind=kind,
            occurred_at=now,
            phase=s.phase,
            actor_id=actor.person_id if actor else None,
            on_behalf_of=actor.on_behalf_of if actor else None,
            data={
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in (data or {}).items()
            },
            notifications=intents,
        )
        if workflow.patched("batched-recording-v1"):
            self._unrecorded.append(event)  # written by _flush when the lock is released
            return
        await workflow.execute_activity_method(  # histories from before batching
            TrialActivities.record_event,
            RecordEventInput(event=event, view=s),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
        )
        self._wake = True  # after the write: waking earlier would change the commands issued

    async def _flush(self) -> None:
        """Write the events emitted since the last flush, with the view after them, at once."""
        if not self._unrecorded:
            return
        events, self._unrecorded = self._unrecorded, []
        await workflow.execute_activity_method(
            TrialActivities.record_events,
            RecordEventsInput(events=events, view=self.s),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
        )
        self._wake = True  # the main loop recomputes its deadlines from the new state

    @contextlib.asynccontextmanager
    async def _serialised(self) -> AsyncIterator[None]:
        """One command or timer step at a time; its events are recorded before the next starts,
        and before an update handler returns, so callers read their writes."""
        async with self._lock:
            try:
                yield
            finally:
                await self._flush()
            update = workflow.current_update_info()  # reached only when the body succeeded
            if update is not None and self._state is not None:
                handled = self.s.handled_updates
                handled.append(update.id)
                del handled[:-HANDLED_UPDATES_KEPT]

    def _already_done(self) -> bool:
        """This update id was applied already: a client retrying across continue-as-new, where
        Temporal's own de-duplication (per run) cannot see the first attempt."""
        update = workflow.current_update_info()
        return (
            update is not None
            and self._state is not None
            and (update.id in self._state.handled_updates)
        )

    def _publish_search_attributes(self) -> None:
        """Keep phase, organisation, unit and escalation level filterable in the Temporal UI."""
        if not workflow.patched("search-attributes-v1"):
            return  # histories recorded before 0.2 issued no upsert here
        s = self.s
        current = (s.phase.value, s.organisation_id, s.unit_id, s.escalation_level)
        if current == self._published:
            return
        workflow.upsert_search_attributes(
            [
                TRIAL_PHASE.value_set(current[0]),
                TRIAL_ORGANISATION.value_set(current[1]),
                TRIAL_UNIT.value_set(current[2]),
                TRIAL_ESCALATION_LEVEL.value_set(current[3]),
            ]
        )
        self._published = current

    # ------------------------------------------------------------------ command plumbing

    def _check(self, rule: Callable[[T], None], command: T) -> None:
        """Run a rule; a broken one becomes the refusal the caller sees."""
        if self._already_done():
            return  # answered with the current view by the handler, not refused
        if self._state is None or not self._ready:
            raise ApplicationError(
                "the trial is still being set up; try again in a moment",
                type=RefusalType.NOT_READY.value,
                non_retryable=True,
            )
        try:
            rule(command)
        except RuleViolation as error:
            raise _refusal(error) from None

    def _require_phase(self, command: str, *allowed: Phase) -> None:
        if self.s.phase not in allowed:
            raise _phase_conflict(command, self.s.phase, allowed)

    def _require_leader(self, actor: Actor, action: str) -> None:
        """An eligible leader today, and neither they nor whom they act for is the proposer."""
        if actor.involves(self.s.proposer_id):
            raise _forbidden(
                "actor",
                f"no self-approval: the proposer cannot {action} their own trial,"
                " nor can anyone acting on the proposer's behalf",
            )
        if eligible_on(self.s.eligible_approvers, actor.person_id, workflow.now(), self.calendar):
            return
        raise _forbidden(
            "actor",
            f"{actor.person_id!r} may not {action} this trial: only leaders of the trial's unit,"
            " their substitutes in their period, and leaders it was escalated to may",
        )

    def _require_proposer_or_leader(self, actor: Actor, action: str) -> None:
        if actor.involves(self.s.proposer_id):
            return
        if eligible_on(self.s.eligible_approvers, actor.person_id, workflow.now(), self.calendar):
            return
        raise _forbidden("actor", f"only {LEADER_ACTS} may {action} this trial")

    def _require_proposer(self, actor: Actor, action: str) -> None:
        if not actor.involves(self.s.proposer_id):
            raise _forbidden("actor", f"only the proposer may {action} this trial")

    def _require_taking_part(self, actor: Actor, action: str) -> str:
        for person in (actor.person_id, actor.on_behalf_of):
            if person is not None and person in (self.s.proposer_id, *self.s.participants):
                return person
        raise _forbidden("actor", f"only the proposer and the participants may {action}")

    def _check_new_proposal(self, proposal: Proposal, field: str) -> None:
        if proposal.unit_id != self.s.unit_id:
            raise RuleViolation(
                f"{field}.unit_id",
                "a trial stays in its unit; propose a new trial for another unit",
            )
        try:
            check_proposal(proposal, self.policy, self.calendar)
        except RuleViolation as error:
            raise RuleViolation(
                error.field.replace("proposal", field, 1), error.message, error.kind
            ) from None

    # ------------------------------------------------------------------ queries and updates

    @workflow.query
    def view(self) -> TrialView | None:
        return self._state

    @workflow.update
    async def ready(self) -> TrialView:
        """Returns once the proposal is recorded, so a new trial's creator reads their write."""
        await workflow.wait_condition(lambda: self._ready)
        return self.s

    # approvals -------------------------------------------------------------

    def _rule_approval(self, cmd: ApprovalDecision) -> None:
        if cmd.decision is ApprovalChoice.REJECT:
            self._require_phase("reject", Phase.PROPOSED, Phase.CHANGES_REQUESTED)
        else:
            self._require_phase(cmd.decision.value.replace("_", " "), Phase.PROPOSED)
        self._require_leader(cmd.actor, cmd.decision.value.replace("_", " "))
        principal = cmd.actor.on_behalf_of or cmd.actor.person_id
        if cmd.decision is ApprovalChoice.APPROVE and any(
            (a.on_behalf_of or a.person_id) == principal for a in self.s.approvals
        ):
            raise RuleViolation(
                "actor",
                f"{principal!r} has already approved this trial",
                RefusalType.PHASE_CONFLICT,
            )

    @workflow.update
    async def decide_approval(self, cmd: ApprovalDecision) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_approval, cmd)
            s = self.s
            record = ApprovalRecord(
                person_id=cmd.actor.person_id,
                on_behalf_of=cmd.actor.on_behalf_of,
                at=workflow.now(),
                comment=cmd.comment,
            )
            if cmd.decision is ApprovalChoice.APPROVE:
                s.approvals.append(record)
                await self._emit(
                    EventKind.APPROVAL_GIVEN,
                    actor=cmd.actor,
                    data={
                        "comment": cmd.comment,
                        "count": len(s.approvals),
                        "required": s.required_approvals,
                    },
                )
                if len(s.approvals) >= s.required_approvals:
                    await self._approved(cmd.actor)
            elif cmd.decision is ApprovalChoice.REJECT:
                s.phase = Phase.REJECTED
                s.closed = True
                self._close_clocks()
                await self._emit(
                    EventKind.REJECTED,
                    actor=cmd.actor,
                    data={"comment": cmd.comment},
                    notify=[([s.proposer_id], NotificationKind.REJECTED)],
                )
            else:
                s.phase = Phase.CHANGES_REQUESTED
                s.change_request = record
                s.approvals = []
                self._close_clocks()
                await self._emit(
                    EventKind.CHANGES_REQUESTED,
                    actor=cmd.actor,
                    data={"comment": cmd.comment},
                    notify=[([s.proposer_id], NotificationKind.CHANGES_REQUESTED)],
                )
        return self.s

    @decide_approval.validator
    def _validate_approval(self, cmd: ApprovalDecision) -> None:
        self._check(self._rule_approval, cmd)

    def _rule_revise(self, cmd: Revision) -> None:
        self._require_phase("revise", Phase.CHANGES_REQUESTED)
        self._require_proposer(cmd.actor, "revise")
        self._check_new_proposal(cmd.proposal, "proposal")

    @workflow.update
    async def revise(self, cmd: Revision) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_revise, cmd)
            self.s.proposal = cmd.proposal
            await self._begin_approval(EventKind.REVISED, cmd.actor)
        return self.s

    @revise.validator
    def _validate_revise(self, cmd: Revision) -> None:
        self._check(self._rule_revise, cmd)

    def _rule_withdraw(self, cmd: Withdraw) -> None:
        self._require_phase("withdraw", Phase.PROPOSED, Phase.CHANGES_REQUESTED, Phase.SCHEDULED)
        self._require_proposer(cmd.actor, "withdraw")

    @workflow.update
    async def withdraw(self, cmd: Withdraw) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_withdraw, cmd)
            s = self.s
            s.phase = Phase.WITHDRAWN
            s.closed = True
            self._close_clocks()
            await self._emit(
                EventKind.WITHDRAWN,
                actor=cmd.actor,
                data={"reason": cmd.reason},
                notify=[(self._leaders_today() + s.participants, NotificationKind.WITHDRAWN)],
            )
        return self.s

    @withdraw.validator
    def _validate_withdraw(self, cmd: Withdraw) -> None:
        self._check(self._rule_withdraw, cmd)

    # the trial period ------------------------------------------------------

    def _rule_check_in(self, cmd: CheckIn) -> None:
        self._require_phase("check in on", Phase.RUNNING)
        self._require_taking_part(cmd.actor, "check in")
        known = {m.name for m in self.s.proposal.measures}
        unknown = sorted(set(cmd.measures) - known)
        if unknown:
            raise RuleViolation(
                "measures",
                f"unknown measure {unknown[0]!r}; the trial measures "
                + (", ".join(sorted(known)) or "nothing"),
            )

    @workflow.update
    async def check_in(self, cmd: CheckIn) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_check_in, cmd)
            s = self.s
            person = self._require_taking_part(cmd.actor, "check in")
            s.last_check_in = CheckInRecord(
                person_id=person, at=workflow.now(), note=cmd.note, measures=cmd.measures
            )
            s.check_ins += 1
            s.stalled = False
            self._open_clock(Step.CHECK_IN)
            await self._emit(
                EventKind.CHECKED_IN,
                actor=cmd.actor,
                data={"note": cmd.note, "measures": cmd.measures},
            )
        return self.s

    @check_in.validator
    def _validate_check_in(self, cmd: CheckIn) -> None:
        self._check(self._rule_check_in, cmd)

    def _rule_pause(self, cmd: Pause) -> None:
        self._require_phase("pause", Phase.RUNNING)
        self._require_proposer_or_leader(cmd.actor, "pause")

    @workflow.update
    async def pause(self, cmd: Pause) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_pause, cmd)
            s = self.s
            s.phase = Phase.PAUSED
            s.paused_at = workflow.now()
            s.stalled = False
            self._close_clocks()
            await self._emit(
                EventKind.PAUSED,
                actor=cmd.actor,
                data={"reason": cmd.reason},
                notify=[(self._everyone(cmd.actor), NotificationKind.PAUSED)],
            )
        return self.s

    @pause.validator
    def _validate_pause(self, cmd: Pause) -> None:
        self._check(self._rule_pause, cmd)

    def _rule_resume(self, cmd: Resume) -> None:
        self._require_phase("resume", Phase.PAUSED)
        self._require_proposer_or_leader(cmd.actor, "resume")

    @workflow.update
    async def resume(self, cmd: Resume) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_resume, cmd)
            s = self.s
            assert s.paused_at is not None and s.deadlines.ends_at is not None
            paused_for = workflow.now() - s.paused_at
            s.paused_seconds += paused_for.total_seconds()
            s.paused_at = None
            s.deadlines.ends_at = s.deadlines.ends_at + paused_for
            s.phase = Phase.RUNNING
            self._open_clock(Step.CHECK_IN)
            await self._emit(
                EventKind.RESUMED,
                actor=cmd.actor,
                data={"paused_seconds": paused_for.total_seconds(), "ends_at": s.deadlines.ends_at},
                notify=[(self._everyone(cmd.actor), NotificationKind.RESUMED)],
            )
        return self.s

    @resume.validator
    def _validate_resume(self, cmd: Resume) -> None:
        self._check(self._rule_resume, cmd)

    def _extended_end(self, cmd: Extend) -> datetime:
        s = self.s
        assert s.deadlines.ends_at is not None and s.started_at is not None
        new_end = self.calendar.add(s.deadlines.ends_at, cmd.by)
        paused = s.paused_seconds
        if s.paused_at is not None:
            paused += (workflow.now() - s.paused_at).total_seconds()
        limit = self.calendar.add(s.started_at, self.policy.max_trial_length) + timedelta(
            seconds=paused
        )
        if new_end > limit:
            raise RuleViolation(
                "by",
                f"extending by {cmd.by} would end the trial on {self.calendar.today(new_end)},"
                f" past the organisation's maximum trial length of {self.policy.max_trial_length}"
                f" (at the latest {self.calendar.today(limit)})",
            )
        return new_end

    def _rule_extend(self, cmd: Extend) -> None:
        self._require_phase("extend", Phase.RUNNING, Phase.PAUSED)
        self._require_proposer_or_leader(cmd.actor, "extend")
        self._extended_end(cmd)

    @workflow.update
    async def extend(self, cmd: Extend) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_extend, cmd)
            s = self.s
            previous = s.deadlines.ends_at
            s.deadlines.ends_at = self._extended_end(cmd)
            s.extended_by.append(str(cmd.by))
            await self._emit(
                EventKind.EXTENDED,
                actor=cmd.actor,
                data={
                    "by": str(cmd.by),
                    "reason": cmd.reason,
                    "from": previous,
                    "ends_at": s.deadlines.ends_at,
                },
                notify=[(self._everyone(cmd.actor), NotificationKind.EXTENDED)],
            )
        return self.s

    @extend.validator
    def _validate_extend(self, cmd: Extend) -> None:
        self._check(self._rule_extend, cmd)

    def _rule_abort(self, cmd: Abort) -> None:
        self._require_phase("abort", Phase.RUNNING, Phase.PAUSED)
        self._require_proposer_or_leader(cmd.actor, "abort")

    @workflow.update
    async def abort(self, cmd: Abort) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_abort, cmd)
            self.s.abort_reason = cmd.reason
            await self._end_running(EventKind.ABORTED, cmd.actor, {"reason": cmd.reason})
        return self.s

    @abort.validator
    def _validate_abort(self, cmd: Abort) -> None:
        self._check(self._rule_abort, cmd)

    # evaluation and outcome ------------------------------------------------

    def _rule_evaluate(self, cmd: Evaluation) -> None:
        self._require_phase("evaluate", Phase.EVALUATING)
        person = self._require_taking_part(cmd.actor, "evaluate")
        if any(e.person_id == person for e in self.s.evaluations):
            raise RuleViolation(
                "actor",
                f"{person!r} has already evaluated this iteration",
                RefusalType.PHASE_CONFLICT,
            )

    @workflow.update
    async def evaluate(self, cmd: Evaluation) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_evaluate, cmd)
            s = self.s
            person = self._require_taking_part(cmd.actor, "evaluate")
            s.evaluations.append(
                EvaluationRecord(
                    person_id=person,
                    at=workflow.now(),
                    worked=cmd.worked,
                    effect=cmd.effect,
                    effort=cmd.effort,
                    value=cmd.value,
                    prediction_held=cmd.prediction_held,
                    comment=cmd.comment,
                )
            )
            await self._emit(
                EventKind.EVALUATED,
                actor=cmd.actor,
                data=cmd.model_dump(mode="json", exclude={"actor"}),
            )
            if not self._responsible(Step.EVALUATION):
                await self._to_deciding("all_evaluated")
        return self.s

    @evaluate.validator
    def _validate_evaluate(self, cmd: Evaluation) -> None:
        self._check(self._rule_evaluate, cmd)

    def _rule_outcome(self, cmd: OutcomeDecision) -> None:
        self._require_phase("decide the outcome of", Phase.DECIDING)
        self._require_leader(cmd.actor, "decide the outcome of")
        if cmd.revised_proposal is not None:
            self._check_new_proposal(cmd.revised_proposal, "revised_proposal")

    @workflow.update
    async def decide_outcome(self, cmd: OutcomeDecision) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_outcome, cmd)
            s = self.s
            now = workflow.now()
            s.outcome = OutcomeRecord(
                decision=cmd.decision,
                person_id=cmd.actor.person_id,
                on_behalf_of=cmd.actor.on_behalf_of,
                at=now,
                comment=cmd.comment,
            )
            self._close_clocks()
            outcome_note = [(self._everyone(cmd.actor), NotificationKind.OUTCOME)]
            if cmd.decision is OutcomeChoice.ADOPT:
                s.phase = Phase.ADOPTED
                s.follow_up = FollowUpRecord(
                    due_at=self.calendar.add(now, self.policy.follow_up_after)
                )
                s.deadlines.follow_up_at = s.follow_up.due_at
                await self._emit(
                    EventKind.ADOPTED,
                    actor=cmd.actor,
                    data={"comment": cmd.comment, "follow_up_at": s.follow_up.due_at},
                    notify=outcome_note,
                )
            elif cmd.decision is OutcomeChoice.ABANDON:
                s.phase = Phase.ABANDONED
                s.closed = True
                await self._emit(
                    EventKind.ABANDONED,
                    actor=cmd.actor,
                    data={"comment": cmd.comment},
                    notify=outcome_note,
                )
            else:
                assert cmd.revised_proposal is not None
                await self._emit(
                    EventKind.ADAPTED,
                    actor=cmd.actor,
                    data={"comment": cmd.comment, "next_iteration": s.iteration + 1},
                    notify=outcome_note,
                )
                self._next_iteration(cmd.revised_proposal)
                await self._begin_approval(EventKind.PROPOSED, cmd.actor)
                self._continue_as_new = True
        return self.s

    @decide_outcome.validator
    def _validate_outcome(self, cmd: OutcomeDecision) -> None:
        self._check(self._rule_outcome, cmd)

    def _next_iteration(self, proposal: Proposal) -> None:
        """Archive this PDSA cycle and reset everything that belongs to one iteration."""
        s = self.s
        s.previous_iterations.append(
            IterationSummary(
                iteration=s.iteration,
                title=s.proposal.title,
                started_at=s.started_at,
                ended_at=s.ended_at,
                outcome=s.outcome,
                evaluations=len(s.evaluations),
            )
        )
        s.iteration += 1
        s.proposal = proposal
        s.approvals = []
        s.evaluations = []
        s.outcome = None
        s.started_at = s.ended_at = s.paused_at = None
        s.paused_seconds = 0.0
        s.extended_by = []
        s.abort_reason = None
        s.last_check_in = None
        s.check_ins = 0
        s.stalled = False
        s.deadlines.starts_at = s.deadlines.ends_at = s.deadlines.follow_up_at = None

    def _rule_follow_up(self, cmd: FollowUpAnswer) -> None:
        self._require_phase("answer the follow-up of", Phase.ADOPTED)
        follow_up = self.s.follow_up
        if follow_up is None or follow_up.requested_at is None:
            raise RuleViolation(
                "phase", "the follow-up has not been asked yet", RefusalType.PHASE_CONFLICT
            )
        if follow_up.answered_at is not None or follow_up.closed_unanswered:
            raise RuleViolation(
                "phase", "the follow-up is already closed", RefusalType.PHASE_CONFLICT
            )
        self._require_proposer_or_leader(cmd.actor, "answer the follow-up of")

    @workflow.update
    async def answer_follow_up(self, cmd: FollowUpAnswer) -> TrialView:
        async with self._serialised():
            if self._already_done():
                return self.s
            self._check(self._rule_follow_up, cmd)
            s = self.s
            assert s.follow_up is not None
            s.follow_up.answered_at = workflow.now()
            s.follow_up.still_in_use = cmd.still_in_use
            s.follow_up.comment = cmd.comment
            s.closed = True
            await self._emit(
                EventKind.FOLLOW_UP_ANSWERED,
                actor=cmd.actor,
                data={"still_in_use": cmd.still_in_use, "comment": cmd.comment},
            )
        return self.s

    @answer_follow_up.validator
    def _validate_follow_up(self, cmd: FollowUpAnswer) -> None:
        self._check(self._rule_follow_up, cmd)
