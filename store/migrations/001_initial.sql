-- Directory, read model, audit trail and notification outbox.

CREATE TABLE organisations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    policy      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE units (
    id              text PRIMARY KEY,
    organisation_id text NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    parent_id       text REFERENCES units(id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    name            text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX units_org_idx ON units (organisation_id);
CREATE INDEX units_parent_idx ON units (parent_id);

CREATE TABLE people (
    id              text PRIMARY KEY,
    organisation_id text NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    email           text NOT NULL,
    locale          text NOT NULL CHECK (locale IN ('da', 'en')),
    admin           boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_org_idx ON people (organisation_id);

CREATE TABLE unit_leaders (
    unit_id   text NOT NULL REFERENCES units(id) ON DELETE CASCADE,
    person_id text NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (unit_id, person_id)
);
CREATE INDEX unit_leaders_person_idx ON unit_leaders (person_id);

CREATE TABLE unit_members (
    unit_id   text NOT NULL REFERENCES units(id) ON DELETE CASCADE,
    person_id text NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (unit_id, person_id)
);
CREATE INDEX unit_members_person_idx ON unit_members (person_id);

CREATE TABLE substitutes (
    leader_id     text NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    substitute_id text NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    valid_from    date NOT NULL,
    valid_to      date NOT NULL,
    PRIMARY KEY (leader_id, substitute_id, valid_from),
    CHECK (valid_to >= valid_from)
);
CREATE INDEX substitutes_substitute_idx ON substitutes (substitute_id);

-- Read model: one current row per trial, replaced by the view of the highest event seq.
CREATE TABLE trials (
    id               uuid PRIMARY KEY,
    workflow_id      text NOT NULL UNIQUE,
    organisation_id  text NOT NULL,
    unit_id          text NOT NULL,
    proposer_id      text NOT NULL,
    title            text NOT NULL,
    phase            text NOT NULL,
    iteration        integer NOT NULL,
    stalled          boolean NOT NULL DEFAULT false,
    escalation_level integer NOT NULL DEFAULT 0,
    last_seq         integer NOT NULL,
    created_at       timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL,
    view             jsonb NOT NULL
);
CREATE INDEX trials_org_activity_idx ON trials (organisation_id, last_activity_at DESC, id DESC);
CREATE INDEX trials_org_phase_activity_idx ON trials (organisation_id, phase, last_activity_at DESC, id DESC);
CREATE INDEX trials_org_unit_idx ON trials (organisation_id, unit_id);
CREATE INDEX trials_org_proposer_idx ON trials (organisation_id, proposer_id);

-- Audit trail: append-only, contiguous seq per trial; (trial_id, seq) makes projection idempotent.
CREATE TABLE trial_events (
    trial_id     uuid NOT NULL,
    seq          integer NOT NULL,
    iteration    integer NOT NULL,
    kind         text NOT NULL,
    phase        text NOT NULL,
    actor_id     text,
    on_behalf_of text,
    occurred_at  timestamptz NOT NULL,
    data         jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trial_id, seq)
);

-- Measure values reported with check-ins.
CREATE TABLE trial_measures (
    trial_id    uuid NOT NULL,
    seq         integer NOT NULL,
    measure     text NOT NULL,
    value       double precision NOT NULL,
    reported_by text NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (trial_id, seq, measure)
);

-- Transactional outbox: one row per notification key, so a retried activity never adds another.
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    trial_id        uuid NOT NULL,
    event_seq       integer NOT NULL,
    organisation_id text NOT NULL,
    recipient_id    text NOT NULL,
    kind            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX notifications_pending_idx ON notifications (created_at) WHERE status IN ('pending', 'sending');
CREATE INDEX notifications_trial_idx ON notifications (trial_id);
