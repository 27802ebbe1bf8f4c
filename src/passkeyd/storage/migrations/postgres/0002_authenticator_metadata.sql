-- passkeyd schema, version 2 (PostgreSQL): the authenticator's name, and what assertions flagged
ALTER TABLE factors ADD COLUMN authenticator_name TEXT;
ALTER TABLE factors ADD COLUMN clone_warning BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE factors ADD COLUMN backup_eligible_changed BOOLEAN NOT NULL DEFAULT FALSE;
