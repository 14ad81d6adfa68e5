-- API keys get a scope (a selector their runs stay within; NULL: every machine); existing
-- keys keep their role (admin). The command policy is stored as versions, each set the latest
-- plus one.
ALTER TABLE api_keys ADD COLUMN scope TEXT;

CREATE TABLE policies (
    version    BIGINT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
