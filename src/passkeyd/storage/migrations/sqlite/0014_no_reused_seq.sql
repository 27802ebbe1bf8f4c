-- passkeyd schema, version 14 (SQLite): the tables the API lists (and deletes from) number
-- their rows with AUTOINCREMENT, so that a row's seq is never given again. A page token
-- holds the seq of its page's last (or first) record: once the table's newest rows were
-- deleted, SQLite gave their seq to the next row, which a token held across the deletion
-- then skipped (or listed twice), where PostgreSQL's identity columns never go back.
CREATE TABLE services_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    sid           TEXT NOT NULL UNIQUE,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    passkeys      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
);
INSERT INTO services_new (seq, sid, account_sid, friendly_name, passkeys, settings,
    date_created, date_updated)
    SELECT seq, sid, account_sid, friendly_name, passkeys, settings, date_created, date_updated
    FROM services;
DROP TABLE services;
ALTER TABLE services_new RENAME TO services;
CREATE INDEX services_account ON services(account_sid, seq);

CREATE TABLE entities_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    sid           TEXT NOT NULL UNIQUE,
    account_sid   TEXT NOT NULL,
    service_sid   TEXT NOT NULL,
    identity      TEXT NOT NULL,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL,
    provisional   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (service_sid, identity)
);
INSERT INTO entities_new (seq, sid, account_sid, service_sid, identity, date_created,
    date_updated, provisional)
    SELECT seq, sid, account_sid, service_sid, identity, date_created, date_updated, provisional
    FROM entities;
DROP TABLE entities;
ALTER TABLE entities_new RENAME TO entities;
CREATE INDEX entities_provisional ON entities(date_created) WHERE provisional = 1;

CREATE TABLE factors_new (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    sid                     TEXT NOT NULL UNIQUE,
    account_sid             TEXT NOT NULL,
    service_sid             TEXT NOT NULL,
    entity_sid              TEXT NOT NULL,
    identity                TEXT NOT NULL,
    friendly_name           TEXT NOT NULL,
    status                  TEXT NOT NULL,
    policy                  TEXT NOT NULL,
    registration_challenge  BLOB UNIQUE,
    registration_expires    INTEGER NOT NULL,
    credential_id           BLOB,
    public_key              BLOB,
    algorithm               INTEGER,
    sign_count              INTEGER NOT NULL DEFAULT 0,
    transports              TEXT,
    aaguid                  TEXT,
    fmt                     TEXT,
    backup_eligible         INTEGER,
    backed_up               INTEGER,
    attachment              TEXT,
    date_last_approved      INTEGER,
    date_created            INTEGER NOT NULL,
    date_updated            INTEGER NOT NULL,
    authenticator_name      TEXT,
    clone_warning           INTEGER NOT NULL DEFAULT 0,
    backup_eligible_changed INTEGER NOT NULL DEFAULT 0,
    attested                TEXT,
    reported                TEXT,
    discoverable            INTEGER
);
INSERT INTO factors_new (seq, sid, account_sid, service_sid, entity_sid, identity,
    friendly_name, status, policy, registration_challenge, registration_expires, credential_id,
    public_key, algorithm, sign_count, transports, aaguid, fmt, backup_eligible, backed_up,
    attachment, date_last_approved, date_created, date_updated, authenticator_name,
    clone_warning, backup_eligible_changed, attested, reported, discoverable)
    SELECT seq, sid, account_sid, service_sid, entity_sid, identity, friendly_name, status,
    policy, registration_challenge, registration_expires, credential_id, public_key, algorithm,
    sign_count, transports, aaguid, fmt, backup_eligible, backed_up, attachment,
    date_last_approved, date_created, date_updated, authenticator_name, clone_warning,
    backup_eligible_changed, attested, reported, discoverable
    FROM factors;
DROP TABLE factors;
ALTER TABLE factors_new RENAME TO factors;
CREATE UNIQUE INDEX factors_credential ON factors(service_sid, credential_id)
    WHERE credential_id IS NOT NULL;
CREATE INDEX factors_entity ON factors(entity_sid, seq);
CREATE INDEX factors_unfinished ON factors(registration_expires) WHERE status = 'unverified';

CREATE TABLE challenges_new (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    sid                 TEXT NOT NULL UNIQUE,
    account_sid         TEXT NOT NULL,
    service_sid         TEXT NOT NULL,
    entity_sid          TEXT NOT NULL,
    identity            TEXT NOT NULL,
    factor_sid          TEXT NOT NULL,
    challenge           BLOB NOT NULL UNIQUE,
    rp_id               TEXT NOT NULL,
    user_verification   TEXT NOT NULL,
    options             TEXT NOT NULL,
    allowed_credentials TEXT NOT NULL,
    status              TEXT NOT NULL,
    failed_attempts     INTEGER NOT NULL DEFAULT 0,
    date_created        INTEGER NOT NULL,
    date_updated        INTEGER NOT NULL,
    date_responded      INTEGER,
    expiration_date     INTEGER NOT NULL
);
INSERT INTO challenges_new (seq, sid, account_sid, service_sid, entity_sid, identity,
    factor_sid, challenge, rp_id, user_verification, options, allowed_credentials, status,
    failed_attempts, date_created, date_updated, date_responded, expiration_date)
    SELECT seq, sid, account_sid, service_sid, entity_sid, identity, factor_sid, challenge,
    rp_id, user_verification, options, allowed_credentials, status, failed_attempts,
    date_created, date_updated, date_responded, expiration_date
    FROM challenges;
DROP TABLE challenges;
ALTER TABLE challenges_new RENAME TO challenges;
CREATE INDEX challenges_entity ON challenges(entity_sid, seq);
CREATE INDEX challenges_expiry ON challenges(expiration_date);
CREATE INDEX challenges_pending ON challenges(entity_sid, expiration_date) WHERE status = 'pending';

CREATE TABLE webhooks_new (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO webhooks_new (seq, sid, account_sid, service_sid, friendly_name, event_types,
    webhook_url, webhook_method, status, version, date_created, date_updated)
    SELECT seq, sid, account_sid, service_sid, friendly_name, event_types, webhook_url,
    webhook_method, status, version, date_created, date_updated
    FROM webhooks;
DROP TABLE webhooks;
ALTER TABLE webhooks_new RENAME TO webhooks;
CREATE INDEX webhooks_service ON webhooks(service_sid, seq)
