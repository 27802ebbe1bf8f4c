-- passkeyd schema, version 10: an entity that a factor's creation (P1) made is provisional,
-- and the purge deletes it once it has no factor left (its registrations expired
-- unfinished): every abandoned sign-up (a bot's, with a new identity each time) left its
-- entity behind for good. A passkey of it verified makes it stay (as an entity whose
-- passkeys were deleted does), and so does asking for it with POST .../Entities.
ALTER TABLE entities ADD COLUMN provisional INTEGER NOT NULL DEFAULT 0;
CREATE INDEX entities_provisional ON entities(date_created) WHERE provisional = 1
