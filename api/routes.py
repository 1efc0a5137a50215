"""The endpoints under /api/v1: trials, their commands and audit trail, the inbox, health.

Reads come from the read model (PostgreSQL), scoped to the caller's organisation; commands go to
the trial's workflow as Updates, whose validators decide what is allowed. The API only adds who
acts and on whose behalf, from the verified token and the trial's eligible approvers.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.auth import Caller
from api.deps import API_PREFIX, CallerDep, Services, ServicesDep
from api.errors import Answer, ApiError, error_responses, trial_not_found
from api.idempotent import idempotent
from metrics.ops_app import readiness
from schemas.api import (
    AbortRequest,
    ApprovalRequest,
    CheckInRequest,
    CommandBody,
    EvaluationRequest,
    EventList,
    ExtendRequest,
    FollowUpRequest,
    Health,
    Inbox,
    NotificationList,
    OutcomeRequest,
    PauseRequest,
    Readiness,
    ResumeRequest,
    RevisionRequest,
    TrialPage,
    WithdrawRequest,
)
from schemas.commands import Actor
from schemas.ids import SLUG_PATTERN
from schemas.proposal import Proposal
from schemas.trial import Phase, TrialView
from store import directory_queries, outbox, trial_queries
from store.trial_queries import BadCursor, Cursor, TrialFilter
from workflows.calendar import BusinessCalendar


def model_json(model: BaseModel) -> Response:
    """A read's answer, serialised once by pydantic.

    The route's `response_model` still documents it; returning the bytes skips FastAPI's second
    validation of a model the service has just built (half a millisecond on a full inbox).
    """
    return Response(model.model_dump_json(), media_type="application/json")


router = APIRouter()
health_router = APIRouter(tags=["health"])

# Trial ids derived from an Idempotency-Key: the same (organisation, person, key) always names
# the same workflow, so a retried proposal can only ever start one trial.
TRIAL_ID_NAMESPACE = uuid.UUID("5d0c7f0e-7c1a-4a52-9a55-0f8b7f1d2e61")

# Commands a leader gives; a substitute gives them on behalf of the leader they stand in for.
LEADER_COMMANDS = frozenset(
    {"decide_approval", "decide_outcome", "pause", "resume", "extend", "abort", "answer_follow_up"}
)

TrialIdPath = Annotated[UUID, Path(description="The trial's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="Any unique string (e.g. a UUID) per intended action: a retried request"
        " with the same key and body returns the first answer and acts once.",
    ),
]

COMMAND_ERRORS = error_responses(401, 403, 404, 409, 422, 503)
READ_ERRORS = error_responses(401, 404, 422)


def acting_for(view: TrialView, person_id: str, today: date) -> str | None:
    """The leader the caller stands in for, when standing in is their only say on the trial.

    A leader of the unit, or one the trial was escalated to, acts in their own name. Someone who
    may act only as a registered substitute acts on behalf of that leader (the one whose period
    covers today, else any: the workflow then refuses with the period rule), so the audit trail
    records both names. Nobody acts on behalf of anyone for their own trial.
    """
    if person_id == view.proposer_id:
        return None
    entries = [e for e in view.eligible_approvers if e.person_id == person_id]
    if any(e.via != "substitute" and e.valid_on(today) for e in entries):
        return None
    standing_in = [e for e in entries if e.via == "substitute" and e.on_behalf_of]
    current = [e for e in standing_in if e.valid_on(today)]
    chosen = current or standing_in
    return chosen[0].on_behalf_of if chosen else None


async def _command(
    svc: Services,
    caller: Caller,
    request: Request,
    trial_id: UUID,
    name: str,
    body: CommandBody,
    key: str | None,
) -> Response:
    """Send one command to the trial, as the caller (for whom they stand in, if anyone)."""

    async def act(scoped_key: str | None) -> Answer:
        on_behalf_of = None
        visible_to: str | None = caller.organisation_id  # the client checks the organisation
        if name in LEADER_COMMANDS:  # who the caller stands in for is read off the trial
            view = await trial_queries.trial_view(svc.pool, caller.organisation_id, trial_id)
            if view is None:
                raise trial_not_found()
            on_behalf_of = acting_for(view, caller.person_id, await svc.today())
            visible_to = None  # reading the view, scoped to the organisation, already did
        command = body.to_command(Actor(person_id=caller.person_id, on_behalf_of=on_behalf_of))
        result = await svc.trials.command(
            trial_id,
            name,
            command,
            organisation_id=visible_to,
            idempotency_key=scoped_key,
        )
        return Answer(200, result.model_dump(mode="json"))

    return await idempotent(svc, caller, request, key, body.model_dump(mode="json"), act)


# ---------------------------------------------------------------------------------- trials


@router.post(
    "/trials",
    tags=["trials"],
    summary="Propose a trial",
    status_code=201,
    response_model=TrialView,
    responses={
        201: {
            "description": "The trial is started and its proposal recorded; `Location` is its URL.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **COMMAND_ERRORS,
    },
)
async def propose(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    proposal: Annotated[Proposal, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Start a trial for a unit the caller belongs to (or leads); the caller is its proposer.

    Answers once the proposal is in the read model, so listing right after shows it.
    """

    async def act(scoped_key: str | None) -> Answer:
        trial_id = uuid.uuid5(TRIAL_ID_NAMESPACE, scoped_key) if scoped_key else None
        # A retry that races the first request (or comes after its stored answer expired) has
        # the same trial id, since it comes from the key: propose answers with that trial.
        view = await svc.trials.propose(
            Actor(person_id=caller.person_id), proposal, trial_id=trial_id
        )
        return Answer(
            201,
            view.model_dump(mode="json"),
            {"Location": f"{API_PREFIX}/trials/{view.trial_id}"},
        )

    return await idempotent(
        svc, caller, request, idempotency_key, proposal.model_dump(mode="json"), act
    )


@router.get(
    "/trials",
    tags=["trials"],
    summary="List trials",
    response_model=TrialPage,
    responses=error_responses(401, 422),
)
async def list_trials(
    svc: ServicesDep,
    caller: CallerDep,
    phase: Annotated[
        list[Phase] | None, Query(description="Only these phases (repeat for several).")
    ] = None,
    unit: Annotated[
        str | None,
        Query(pattern=SLUG_PATTERN, description="Only this unit and the units below it."),
    ] = None,
    proposer: Annotated[
        str | None, Query(pattern=SLUG_PATTERN, description="Only trials this person proposed.")
    ] = None,
    stalled: Annotated[bool | None, Query(description="Only stalled (or not stalled).")] = None,
    escalated: Annotated[
        bool | None, Query(description="Only escalated (or not escalated) trials.")
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Text in the title, any case."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=400, description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Trials per page.")] = 20,
) -> Response:
    """The organisation's trials, most recent activity first, a page at a time.

    Everyone in the organisation may list its trials. Pages continue with an opaque cursor and
    stay stable while new trials are added.
    """
    try:
        after = Cursor.decode(cursor) if cursor else None
    except BadCursor as error:
        raise ApiError(422, str(error), field="cursor") from None
    filters = TrialFilter(
        phases=phase or [],
        unit_id=unit,
        proposer_id=proposer,
        stalled=stalled,
        escalated=escalated,
        text=q,
    )
    items, next_cursor = await trial_queries.list_trials(
        svc.pool, caller.organisation_id, filters, limit=limit, after=after
    )
    return model_json(
        TrialPage(items=items, next_cursor=next_cursor.encode() if next_cursor else None)
    )


@router.get(
    "/trials/{trial_id}",
    tags=["trials"],
    summary="View a trial",
    response_model=TrialView,
    responses=READ_ERRORS,
)
async def view_trial(svc: ServicesDep, caller: CallerDep, trial_id: TrialIdPath) -> TrialView:
    """Everything about the trial, as of its last recorded event."""
    view = await trial_queries.trial_view(svc.pool, caller.organisation_id, trial_id)
    if view is None:
        raise trial_not_found()
    return view


@router.get(
    "/trials/{trial_id}/events",
    tags=["trials"],
    summary="The trial's audit trail",
    response_model=EventList,
    responses=READ_ERRORS,
)
async def trial_events(svc: ServicesDep, caller: CallerDep, trial_id: TrialIdPath) -> EventList:
    """Every recorded event in order: what happened, who did it and on whose behalf."""
    events = await trial_queries.trial_events(svc.pool, caller.organisation_id, trial_id)
    if events is None:
        raise trial_not_found()
    return EventList(trial_id=trial_id, items=events)


@router.get(
    "/trials/{trial_id}/notifications",
    tags=["trials"],
    summary="What the trial's notifications did on each channel",
    response_model=NotificationList,
    responses=READ_ERRORS,
)
async def trial_notifications(
    svc: ServicesDep, caller: CallerDep, trial_id: TrialIdPath
) -> NotificationList:
    """Each delivery (e-mail, Teams, webhook) with its status, attempts and last error; a channel
    that kept failing shows here as failed, and never holds the trial up."""
    if await svc.trials.organisation_of(trial_id) != caller.organisation_id:
        raise trial_not_found()
    items = await outbox.notifications_of(svc.pool, trial_id, caller.organisation_id)
    return NotificationList(trial_id=trial_id, items=items)


# -------------------------------------------------------------------------------- commands


@router.post(
    "/trials/{trial_id}/approvals",
    tags=["commands"],
    summary="Approve, reject or request changes",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def decide_approval(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: ApprovalRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """An eligible leader's decision on the proposal; never the proposer's (no self-approval)."""
    return await _command(svc, caller, request, trial_id, "decide_approval", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/revisions",
    tags=["commands"],
    summary="Revise the proposal",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def revise(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: RevisionRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The proposer answers a change request; approvals start over."""
    return await _command(svc, caller, request, trial_id, "revise", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/check-ins",
    tags=["commands"],
    summary="Check in",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def check_in(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: CheckInRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A progress note from the proposer or a participant; restarts the stall clock."""
    return await _command(svc, caller, request, trial_id, "check_in", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/pause",
    tags=["commands"],
    summary="Pause the trial",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def pause(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: Annotated[PauseRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The proposer or an eligible leader pauses; the end date moves by the paused time."""
    return await _command(
        svc, caller, request, trial_id, "pause", body or PauseRequest(), idempotency_key
    )


@router.post(
    "/trials/{trial_id}/resume",
    tags=["commands"],
    summary="Resume the trial",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def resume(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: Annotated[ResumeRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The proposer or an eligible leader resumes a paused trial."""
    return await _command(
        svc, caller, request, trial_id, "resume", body or ResumeRequest(), idempotency_key
    )


@router.post(
    "/trials/{trial_id}/extend",
    tags=["commands"],
    summary="Extend the trial period",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def extend(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: ExtendRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A later end date, within the organisation's maximum trial length."""
    return await _command(svc, caller, request, trial_id, "extend", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/abort",
    tags=["commands"],
    summary="Abort the trial",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def abort(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: AbortRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """End the trial early, with a reason; it goes on to evaluation (it still teaches)."""
    return await _command(svc, caller, request, trial_id, "abort", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/withdraw",
    tags=["commands"],
    summary="Withdraw the proposal",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def withdraw(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: Annotated[WithdrawRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The proposer withdraws before the trial runs."""
    return await _command(
        svc, caller, request, trial_id, "withdraw", body or WithdrawRequest(), idempotency_key
    )


@router.post(
    "/trials/{trial_id}/evaluations",
    tags=["commands"],
    summary="Evaluate the trial",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def evaluate(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: EvaluationRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The proposer's or a participant's evaluation; once all are in, a leader decides."""
    return await _command(svc, caller, request, trial_id, "evaluate", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/outcome",
    tags=["commands"],
    summary="Decide the outcome",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def decide_outcome(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: OutcomeRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """An eligible leader adopts, adapts (next iteration) or abandons the trial."""
    return await _command(svc, caller, request, trial_id, "decide_outcome", body, idempotency_key)


@router.post(
    "/trials/{trial_id}/follow-up",
    tags=["commands"],
    summary="Answer the follow-up",
    response_model=TrialView,
    responses=COMMAND_ERRORS,
)
async def answer_follow_up(
    svc: ServicesDep,
    caller: CallerDep,
    request: Request,
    trial_id: TrialIdPath,
    body: FollowUpRequest,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """After adoption: is the change still in use? Closes the trial."""
    return await _command(svc, caller, request, trial_id, "answer_follow_up", body, idempotency_key)


# ----------------------------------------------------------------------------------- inbox


@router.get(
    "/inbox",
    tags=["inbox"],
    summary="What waits on me",
    response_model=Inbox,
    responses=error_responses(401),
)
async def inbox(svc: ServicesDep, caller: CallerDep) -> Response:
    """Approvals and decisions the caller may give (as leader, substitute or by escalation),
    check-ins and evaluations due on their trials, and stalled or escalated trials in the units
    they lead (with the units below them).
    """
    now = await svc.now()
    today = BusinessCalendar.today(now)
    led = await directory_queries.units_led_by(svc.pool, caller.person_id, today)
    found = await trial_queries.inbox(
        svc.pool, caller.person_id, caller.organisation_id, led, now=now, today=today
    )
    return model_json(found)


# ---------------------------------------------------------------------------------- health


@health_router.get("/healthz", summary="The process runs", response_model=Health)
async def healthz() -> Health:
    """Always 200 while the process serves requests."""
    return Health()


@health_router.get(
    "/readyz",
    summary="Temporal and PostgreSQL answer",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer."}},
)
async def readyz(svc: ServicesDep) -> JSONResponse:
    """200 when Temporal and PostgreSQL both answer within two seconds, else 503 naming which."""
    ready, checks = await readiness(svc.temporal, svc.pool)
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
