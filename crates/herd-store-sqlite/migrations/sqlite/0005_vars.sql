-- Variables and secrets (`herd vars`): a value by scope and key; a secret's value is sealed by
-- the server before it is stored.
CREATE TABLE vars (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    secret     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
