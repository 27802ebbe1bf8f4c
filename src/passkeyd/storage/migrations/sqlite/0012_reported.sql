-- passkeyd schema, version 12 (SQLite): the status FIDO reports a passkey's model in
-- (REVOKED, a compromise) that was last announced for it (`passkeys revoked --announce`),
-- so that each passkey is announced once per status
ALTER TABLE factors ADD COLUMN reported TEXT;
