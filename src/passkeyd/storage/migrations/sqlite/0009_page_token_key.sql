-- passkeyd schema, version 9: a random key, made once per database, that page tokens are
-- encrypted with. A token held the row's sequence number, which every account shares: one
-- account could count another's sign-ins between two of its own pages. (`migrate` writes
-- the key, from Python's `secrets`: as random on every server version.)
CREATE TABLE page_token_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL
)
