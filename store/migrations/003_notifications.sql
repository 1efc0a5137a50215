-- Delivery of notifications: channels per outbox row, retry state, leases, Teams and webhook
-- settings in the directory, and one delivery row per (subscription, trial, event) for webhooks.

-- The outbox row becomes one delivery on one channel: e-mail rows per recipient (written with the
-- event, as before), Teams rows per (event, kind, channel URL), digest rows per leader and week.
ALTER TABLE notifications
    ADD COLUMN channel         text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'teams')),
    ADD COLUMN target          text,              -- the Teams webhook URL; never shown by the API
    ADD COLUMN payload         jsonb,             -- what a digest lists (ids only)
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN locked_until    timestamptz,       -- lease: a crashed dispatcher's claim expires
    ADD COLUMN claim_token     uuid,              -- only the current claim may record an outcome
    ADD COLUMN message_id      text;              -- e-mail Message-ID, for receivers to deduplicate
-- A digest belongs to a leader and a week, not to a trial's event.
ALTER TABLE notifications
    ALTER COLUMN trial_id DROP NOT NULL,
    ALTER COLUMN event_seq DROP NOT NULL;
CREATE INDEX notifications_due_idx
    ON notifications (next_attempt_at, id) WHERE status IN ('pending', 'sending');
CREATE INDEX notifications_trial_event_idx ON notifications (trial_id, event_seq, kind);

-- Microsoft Teams (Power Automate "When a Teams webhook request is received") per unit, with the
-- organisation's as the fallback; the nearest one up the unit tree wins.
ALTER TABLE organisations ADD COLUMN teams_webhook_url text;
ALTER TABLE units ADD COLUMN teams_webhook_url text;

-- Outbound webhooks an organisation subscribes to; an empty `events` means every event kind.
CREATE TABLE webhook_subscriptions (
    organisation_id text NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    url             text NOT NULL,
    secret          text NOT NULL,
    events          text[] NOT NULL DEFAULT '{}',
    active          boolean NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, id)
);

-- One row per (subscription, trial, event), written in the event's transaction; delivered in seq
-- order per (subscription, trial).
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    delivery_id      uuid NOT NULL UNIQUE,
    organisation_id  text NOT NULL,
    subscription_id  text NOT NULL,
    trial_id         uuid NOT NULL,
    seq              integer NOT NULL,
    event_kind       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    claim_token      uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (subscription_id, trial_id, seq)
);
CREATE INDEX webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at, id) WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_order_idx
    ON webhook_deliveries (subscription_id, trial_id, seq) WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_trial_idx ON webhook_deliveries (trial_id);
