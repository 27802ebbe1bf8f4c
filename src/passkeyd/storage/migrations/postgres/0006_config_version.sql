-- passkeyd schema, version 6: one counter that every change to accounts, API keys,
-- services or webhooks increments in its own transaction, so each process can keep these
-- in memory and check with one small read per request that they are still current
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0)
