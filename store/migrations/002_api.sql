-- What the HTTP API reads: who takes part in which trial (so the inbox never scans JSON), the
-- current step's deadline, indexes that keep listing fast at 100,000 trials per organisation,
-- and the stored answers of requests sent with an Idempotency-Key.

ALTER TABLE trials
    ADD COLUMN due_at       timestamptz,
    ADD COLUMN approved_by  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN evaluated_by text[] NOT NULL DEFAULT '{}';

-- One row per (trial, person, role); approvers keep how they may act and in which period.
-- Replaced with the trial's row whenever that row moves forward (store/read_model.py), so the
-- trial's phase is copied here too: the inbox finds "my trials in this phase" in one index,
-- however many ended trials a person has behind them.
CREATE TABLE trial_people (
    trial_id     uuid NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    person_id    text NOT NULL,
    role         text NOT NULL CHECK (role IN ('proposer', 'participant', 'approver')),
    phase        text NOT NULL,
    via          text CHECK (via IN ('leader', 'substitute', 'escalation')),
    on_behalf_of text,
    valid_from   date,
    valid_to     date
);
CREATE INDEX trial_people_person_idx ON trial_people (person_id, phase, role);
CREATE INDEX trial_people_trial_idx ON trial_people (trial_id);

-- Listing: every filter walks an index in (last_activity_at DESC, id DESC) order, so a page is
-- read straight off the index and the keyset cursor is an index condition.
DROP INDEX IF EXISTS trials_org_unit_idx;
DROP INDEX IF EXISTS trials_org_proposer_idx;
CREATE INDEX trials_org_unit_activity_idx
    ON trials (organisation_id, unit_id, last_activity_at DESC, id DESC);
CREATE INDEX trials_org_proposer_activity_idx
    ON trials (organisation_id, proposer_id, last_activity_at DESC, id DESC);
CREATE INDEX trials_org_stalled_activity_idx
    ON trials (organisation_id, last_activity_at DESC, id DESC) WHERE stalled;
CREATE INDEX trials_org_escalated_activity_idx
    ON trials (organisation_id, last_activity_at DESC, id DESC) WHERE escalation_level > 0;
-- The inbox's "attention" section: stalled or escalated trials of the units someone leads.
CREATE INDEX trials_org_unit_attention_idx
    ON trials (organisation_id, unit_id) WHERE stalled OR escalation_level > 0;

-- Text in the title: a trigram index when pg_trgm can be had (it needs the right to create the
-- extension); without it the search still works, it just scans the organisation's rows.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%); title search runs without an index', SQLERRM;
END
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX trials_title_trgm_idx ON trials USING gin (lower(title) gin_trgm_ops)';
    END IF;
END
$$;

-- Backfill what earlier versions wrote, so an existing read model serves the inbox at once.
UPDATE trials SET
    approved_by = ARRAY(
        SELECT DISTINCT who
        FROM jsonb_array_elements(view -> 'approvals') a,
             LATERAL (VALUES (a ->> 'person_id'), (a ->> 'on_behalf_of')) AS w(who)
        WHERE who IS NOT NULL
    ),
    evaluated_by = ARRAY(
        SELECT e ->> 'person_id' FROM jsonb_array_elements(view -> 'evaluations') e
    ),
    due_at = (CASE phase
        WHEN 'proposed' THEN view -> 'deadlines' ->> 'approval_due'
        WHEN 'scheduled' THEN view -> 'deadlines' ->> 'starts_at'
        WHEN 'running' THEN view -> 'deadlines' ->> 'check_in_due'
        WHEN 'evaluating' THEN view -> 'deadlines' ->> 'evaluation_due'
        WHEN 'deciding' THEN view -> 'deadlines' ->> 'decision_due'
        WHEN 'adopted' THEN view -> 'deadlines' ->> 'follow_up_at'
    END)::timestamptz;

INSERT INTO trial_people (trial_id, person_id, role, phase)
SELECT id, proposer_id, 'proposer', phase FROM trials;

INSERT INTO trial_people (trial_id, person_id, role, phase)
SELECT DISTINCT t.id, p.person_id, 'participant', t.phase
FROM trials t, jsonb_array_elements_text(t.view -> 'proposal' -> 'participants') AS p(person_id);

INSERT INTO trial_people
    (trial_id, person_id, role, phase, via, on_behalf_of, valid_from, valid_to)
SELECT t.id, e ->> 'person_id', 'approver', t.phase, e ->> 'via', e ->> 'on_behalf_of',
       (e ->> 'valid_from')::date, (e ->> 'valid_to')::date
FROM trials t, jsonb_array_elements(t.view -> 'eligible_approvers') e;

-- Idempotency-Key: the first answer to a POST, per caller and key; a retry gets it back.
CREATE TABLE idempotency_keys (
    organisation_id text NOT NULL,
    person_id       text NOT NULL,
    key             text NOT NULL,
    method          text NOT NULL,
    path            text NOT NULL,
    request_hash    text NOT NULL,
    status_code     integer NOT NULL,
    body            jsonb NOT NULL,
    headers         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, person_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
