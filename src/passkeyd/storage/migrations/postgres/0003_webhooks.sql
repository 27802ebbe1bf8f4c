-- passkeyd schema, version 3 (PostgreSQL): webhooks, their delivery outbox, sealed auth tokens
ALTER TABLE accounts ADD COLUMN token_sealed BYTEA;

CREATE TABLE webhooks (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid            TEXT NOT NULL UNIQUE,
    account_sid    TEXT NOT NULL,
    service_sid    TEXT NOT NULL,
    friendly_name  TEXT NOT NULL,
    event_types    TEXT NOT NULL,
    webhook_url    TEXT NOT NULL,
    webhook_method TEXT NOT NULL,
    status         TEXT NOT NULL,
    version        TEXT NOT NULL,
    date_created   BIGINT NOT NULL,
    date_updated   BIGINT NOT NULL
);
CREATE INDEX webhooks_service ON webhooks(service_sid, seq);

CREATE TABLE webhook_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_sid       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    webhook_sid     TEXT NOT NULL,
    account_sid     TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
