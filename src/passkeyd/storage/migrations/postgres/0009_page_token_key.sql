-- passkeyd schema, version 9: a random key, made once per database, that page tokens are
-- encrypted with. A token held the row's sequence number, which every account shares: one
-- account could count another's sign-ins between two of its own pages.
-- (gen_random_uuid draws from the server's strong random source, without pgcrypto: two of
-- them hashed give the 32 bytes.)
CREATE TABLE page_token_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key BYTEA NOT NULL
);
INSERT INTO page_token_key (id, key) VALUES (
    1,
    sha256(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))
);
