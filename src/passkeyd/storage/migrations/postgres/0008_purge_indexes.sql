-- passkeyd schema, version 8: the purge finds what it deletes without reading every row.
-- Without these, each purge (every 5 minutes) scanned the whole factors table for
-- unfinished registrations, and the whole webhook outbox for sent deliveries: about half a
-- second with a million passkeys on SQLite, holding the write lock all along.
CREATE INDEX factors_unfinished ON factors(registration_expires) WHERE status = 'unverified';
CREATE INDEX webhook_deliveries_done ON webhook_deliveries(date_updated) WHERE status <> 'pending'
