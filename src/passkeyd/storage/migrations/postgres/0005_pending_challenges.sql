-- passkeyd schema, version 5: count an entity's pending challenges without reading its history
CREATE INDEX challenges_pending ON challenges(entity_sid, expiration_date) WHERE status = 'pending'
