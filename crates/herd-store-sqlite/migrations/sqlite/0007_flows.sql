-- Jobs and workflows: definitions by kind and name, one row per version (1, 2, …); workflow
-- runs with a copy of the definition they run, and one row per step, written at every
-- transition. Steps name their runs (`run_id`) without a foreign key: retention deletes runs.
CREATE TABLE definitions (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,  -- as checked (JSON)
    source     TEXT NOT NULL,  -- as written (YAML or JSON)
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);

CREATE TABLE flow_runs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          INTEGER NOT NULL,
    definition       TEXT NOT NULL,
    params           TEXT NOT NULL,
    sealed           TEXT NOT NULL,
    targets          TEXT NOT NULL,  -- JSON array of selectors
    state            TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    parent           TEXT            -- RUN/STEP when a step of another workflow run
);
CREATE INDEX flow_runs_created ON flow_runs(created_at);
CREATE INDEX flow_runs_unfinished ON flow_runs(created_at) WHERE finished_at IS NULL;

CREATE TABLE flow_steps (
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id),
    step_id     TEXT NOT NULL,
    -- creation order within the run: the run's highest plus one for each new step
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    run_id      TEXT,
    outputs     TEXT,
    output      TEXT,
    detail      TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    not_before  INTEGER,
    PRIMARY KEY (flow_run_id, step_id)
);
CREATE INDEX flow_steps_seq ON flow_steps(flow_run_id, seq);
