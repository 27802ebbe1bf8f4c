-- passkeyd schema, version 2 (SQLite): the authenticator's name, and what assertions flagged
ALTER TABLE factors ADD COLUMN authenticator_name TEXT;
ALTER TABLE factors ADD COLUMN clone_warning INTEGER NOT NULL DEFAULT 0;
ALTER TABLE factors ADD COLUMN backup_eligible_changed INTEGER NOT NULL DEFAULT 0;
