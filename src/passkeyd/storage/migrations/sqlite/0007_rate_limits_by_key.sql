-- passkeyd schema, version 7: rate-limit windows stored in their key's own B-tree
-- (WITHOUT ROWID), so counting a hit writes one page instead of a row page and an index page
CREATE TABLE rate_limits_by_key (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO rate_limits_by_key (key, window_start, count)
    SELECT key, window_start, count FROM rate_limits;
DROP TABLE rate_limits;
ALTER TABLE rate_limits_by_key RENAME TO rate_limits
