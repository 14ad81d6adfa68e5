-- The spine: agents, credentials, runs, tasks, audit. Times are unix milliseconds.
CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    cred_hash     TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',  -- reported by the agent (--label)
    server_labels TEXT NOT NULL DEFAULT '{}',  -- set by operators; a null value removes a reported label
    facts         TEXT NOT NULL DEFAULT '{}',
    metrics       TEXT,
    version       TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    last_seen     INTEGER,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX agents_live_name ON agents(name) WHERE revoked_at IS NULL;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    uses_left   INTEGER NOT NULL
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    command          TEXT NOT NULL,
    selector         TEXT NOT NULL,
    spec             TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX runs_created ON runs(created_at);

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs(id),
    agent_id      TEXT NOT NULL,
    agent_name    TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    dispatched_at INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    pid           INTEGER,
    exit_code     INTEGER,
    signal        INTEGER,
    reason        TEXT,
    detail        TEXT,
    -- last event seq persisted; output log position committed with it
    out_seq       INTEGER NOT NULL DEFAULT 0,
    out_total     INTEGER NOT NULL DEFAULT 0,
    out_head_len  INTEGER NOT NULL DEFAULT 0,
    out_tail_seg  INTEGER NOT NULL DEFAULT 0,
    out_tail_len  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_run ON tasks(run_id);
CREATE INDEX tasks_agent_state ON tasks(agent_id, state);
CREATE INDEX tasks_state ON tasks(state);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit(at);
