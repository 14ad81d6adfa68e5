-- Variables and secrets (`herd vars`): a value by scope and key; a secret's value is sealed by
-- the server before it is stored.
CREATE TABLE vars (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    secret     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
