"""Error types a refused command carries, so every layer maps them alike (HTTP 403/409/422)."""

from enum import StrEnum


class RefusalType(StrEnum):
    FORBIDDEN = "Forbidden"  # the actor may not do this (no self-approval, not a leader, ...)
    PHASE_CONFLICT = "PhaseConflict"  # the trial's phase does not allow the command now
    INVALID = "InvalidCommand"  # the command's data breaks a rule (duration too long, ...)
    NOT_READY = "NotReady"  # the trial is still being set up
    NOT_FOUND = "NotFound"  # unknown organisation, unit or person


class RuleViolation(ValueError):
    """A broken rule, with the field it concerns and the kind of refusal."""

    def __init__(self, field: str, message: str, kind: RefusalType = RefusalType.INVALID) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind
