-- passkeyd schema, version 4 (SQLite): rate-limit windows and the audit trail
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);

CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY,
    account_sid  TEXT NOT NULL,
    service_sid  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    code         INTEGER NOT NULL,
    step         TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    date_created INTEGER NOT NULL
);
CREATE INDEX audit_events_account ON audit_events(account_sid, seq);
CREATE INDEX audit_events_date ON audit_events(date_created)
