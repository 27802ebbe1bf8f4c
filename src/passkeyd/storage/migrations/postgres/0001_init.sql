-- passkeyd schema, version 1 (PostgreSQL)
CREATE TABLE accounts (
    sid           TEXT PRIMARY KEY,
    friendly_name TEXT NOT NULL,
    token_hash    BYTEA NOT NULL,
    date_created  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL REFERENCES accounts(sid) ON DELETE CASCADE,
    friendly_name TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL,
    revoked       BOOLEAN NOT NULL DEFAULT FALSE,
    date_created  BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_sid);

CREATE TABLE services (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid           TEXT NOT NULL UNIQUE,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    passkeys      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
CREATE INDEX services_account ON services(account_sid, seq);

CREATE TABLE entities (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid           TEXT NOT NULL UNIQUE,
    account_sid   TEXT NOT NULL,
    service_sid   TEXT NOT NULL,
    identity      TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    UNIQUE (service_sid, identity)
);

CREATE TABLE factors (
    seq                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid                    TEXT NOT NULL UNIQUE,
    account_sid            TEXT NOT NULL,
    service_sid            TEXT NOT NULL,
    entity_sid             TEXT NOT NULL,
    identity               TEXT NOT NULL,
    friendly_name          TEXT NOT NULL,
    status                 TEXT NOT NULL,
    policy                 TEXT NOT NULL,
    registration_challenge BYTEA UNIQUE,
    registration_expires   BIGINT NOT NULL,
    credential_id          BYTEA,
    public_key             BYTEA,
    algorithm              INTEGER,
    sign_count             BIGINT NOT NULL DEFAULT 0,
    transports             TEXT,
    aaguid                 TEXT,
    fmt                    TEXT,
    backup_eligible        BOOLEAN,
    backed_up              BOOLEAN,
    attachment             TEXT,
    date_last_approved     BIGINT,
    date_created           BIGINT NOT NULL,
    date_updated           BIGINT NOT NULL
);
CREATE UNIQUE INDEX factors_credential ON factors(service_sid, credential_id)
    WHERE credential_id IS NOT NULL;
CREATE INDEX factors_entity ON factors(entity_sid, seq);

CREATE TABLE challenges (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid                 TEXT NOT NULL UNIQUE,
    account_sid         TEXT NOT NULL,
    service_sid         TEXT NOT NULL,
    entity_sid          TEXT NOT NULL,
    identity            TEXT NOT NULL,
    factor_sid          TEXT NOT NULL,
    challenge           BYTEA NOT NULL UNIQUE,
    rp_id               TEXT NOT NULL,
    user_verification   TEXT NOT NULL,
    options             TEXT NOT NULL,
    allowed_credentials TEXT NOT NULL,
    status              TEXT NOT NULL,
    failed_attempts     BIGINT NOT NULL DEFAULT 0,
    date_created        BIGINT NOT NULL,
    date_updated        BIGINT NOT NULL,
    date_responded      BIGINT,
    expiration_date     BIGINT NOT NULL
);
CREATE INDEX challenges_entity ON challenges(entity_sid, seq);
CREATE INDEX challenges_expiry ON challenges(expiration_date);
