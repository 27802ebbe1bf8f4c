-- passkeyd schema, version 13 (SQLite): whether a passkey is discoverable (a client-side
-- discoverable credential, signing in with no username), as its browser said at registration
-- (the credProps extension) or its options required (NULL: not known)
ALTER TABLE factors ADD COLUMN discoverable INTEGER;
