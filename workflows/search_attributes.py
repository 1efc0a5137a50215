"""Custom search attributes on each trial workflow, so ops can filter trials in the Temporal UI.

A cluster must have them registered once (the dev stack and the tests do it themselves):
    temporal operator search-attribute create --name TrialPhase --type Keyword
    temporal operator search-attribute create --name TrialOrganisation --type Keyword
    temporal operator search-attribute create --name TrialUnit --type Keyword
    temporal operator search-attribute create --name TrialEscalationLevel --type Int
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TRIAL_PHASE = SearchAttributeKey.for_keyword("TrialPhase")
TRIAL_ORGANISATION = SearchAttributeKey.for_keyword("TrialOrganisation")
TRIAL_UNIT = SearchAttributeKey.for_keyword("TrialUnit")
TRIAL_ESCALATION_LEVEL = SearchAttributeKey.for_int("TrialEscalationLevel")

ALL_KEYS = (TRIAL_PHASE, TRIAL_ORGANISATION, TRIAL_UNIT, TRIAL_ESCALATION_LEVEL)


def trial_search_attributes(
    phase: str, organisation_id: str, unit_id: str, escalation_level: int
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(TRIAL_PHASE, phase),
            SearchAttributePair(TRIAL_ORGANISATION, organisation_id),
            SearchAttributePair(TRIAL_UNIT, unit_id),
            SearchAttributePair(TRIAL_ESCALATION_LEVEL, escalation_level),
        ]
    )
