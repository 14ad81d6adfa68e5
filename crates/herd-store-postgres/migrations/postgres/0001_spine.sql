-- The spine: agents, credentials, runs, tasks, audit. Times are unix milliseconds (BIGINT);
-- JSON columns are JSONB (validated on write, read back as text).
CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    cred_hash     TEXT NOT NULL,
    labels        JSONB NOT NULL DEFAULT '{}',  -- reported by the agent (--label)
    server_labels JSONB NOT NULL DEFAULT '{}',  -- operator edits; a null value removes a reported label
    facts         JSONB NOT NULL DEFAULT '{}',
    metrics       JSONB,
    version       TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    revoked_at    BIGINT
);
CREATE UNIQUE INDEX agents_live_name ON agents(name) WHERE revoked_at IS NULL;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    uses_left   BIGINT NOT NULL
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    command          TEXT NOT NULL,
    selector         TEXT NOT NULL,
    spec             JSONB NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    state            TEXT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX runs_created ON runs(created_at, id);
CREATE INDEX runs_unfinished ON runs(created_at) WHERE finished_at IS NULL;

-- Room left in each page so that the most frequent update (a task's seq and output
-- position, no indexed column) stays on its page (a HOT update, no index entry).
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs(id),
    agent_id      TEXT NOT NULL,
    agent_name    TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    dispatched_at BIGINT,
    started_at    BIGINT,
    finished_at   BIGINT,
    pid           BIGINT,
    exit_code     BIGINT,
    signal        BIGINT,
    reason        TEXT,
    detail        TEXT,
    -- last event seq persisted; output log position committed with it
    out_seq       BIGINT NOT NULL DEFAULT 0,
    out_total     BIGINT NOT NULL DEFAULT 0,
    out_head_len  BIGINT NOT NULL DEFAULT 0,
    out_tail_seg  BIGINT NOT NULL DEFAULT 0,
    out_tail_len  BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 80);
CREATE INDEX tasks_run ON tasks(run_id, agent_name);
CREATE INDEX tasks_agent_state ON tasks(agent_id, state);
CREATE INDEX tasks_created ON tasks(created_at, id);

CREATE TABLE audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  JSONB NOT NULL DEFAULT '{}'
);
