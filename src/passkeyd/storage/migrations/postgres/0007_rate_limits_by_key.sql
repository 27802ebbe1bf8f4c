-- passkeyd schema, version 7: room on each page for updated rows, so counting a rate-limit
-- hit and moving a passkey's signature counter are HOT updates (no index write)
ALTER TABLE rate_limits SET (fillfactor = 70);
ALTER TABLE factors SET (fillfactor = 85)
