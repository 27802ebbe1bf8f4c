-- passkeyd schema, version 11 (PostgreSQL): what vouched for a passkey registered under trusted
-- attestation (JSON: the metadata entry's model and the chain's certificate fingerprints)
ALTER TABLE factors ADD COLUMN attested TEXT;
