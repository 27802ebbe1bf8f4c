-- passkeyd schema, version 3 (SQLite): webhooks, their delivery outbox, sealed auth tokens
ALTER TABLE accounts ADD COLUMN token_sealed BLOB;

CREATE TABLE webhooks (
    seq            INTEGER PRIMARY KEY,
    sid            TEXT NOT NULL UNIQUE,
    account_sid    TEXT NOT NULL,
    service_sid    TEXT NOT NULL,
    friendly_name  TEXT NOT NULL,
    event_types    TEXT NOT NULL,
    webhook_url    TEXT NOT NULL,
    webhook_method TEXT NOT NULL,
    status         TEXT NOT NULL,
    version        TEXT NOT NULL,
    date_created   INTEGER NOT NULL,
    date_updated   INTEGER NOT NULL
);
CREATE INDEX webhooks_service ON webhooks(service_sid, seq);

CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY,
    event_sid       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    webhook_sid     TEXT NOT NULL,
    account_sid     TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    date_created    INTEGER NOT NULL,
    date_updated    INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
