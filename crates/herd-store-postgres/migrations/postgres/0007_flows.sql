-- Jobs and workflows: definitions by kind and name, one row per version (1, 2, …); workflow
-- runs with a copy of the definition they run, and one row per step, written at every
-- transition. Steps name their runs (`run_id`) without a foreign key: retention deletes runs.
-- Definitions, parameters and outputs are TEXT, kept exactly as given (JSONB would reorder
-- their keys); the selectors the store encodes itself are JSONB.
CREATE TABLE definitions (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL,  -- as checked (JSON)
    source     TEXT NOT NULL,  -- as written (YAML or JSON)
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);

CREATE TABLE flow_runs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          BIGINT NOT NULL,
    definition       TEXT NOT NULL,
    params           TEXT NOT NULL,
    sealed           TEXT NOT NULL,
    targets          JSONB NOT NULL,  -- array of selectors
    state            TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    parent           TEXT             -- RUN/STEP when a step of another workflow run
);
CREATE INDEX flow_runs_created ON flow_runs(created_at, id);
CREATE INDEX flow_runs_unfinished ON flow_runs(created_at) WHERE finished_at IS NULL;

-- Room left in each page: a step's row is rewritten at every transition (no indexed column
-- changes, so a HOT update).
CREATE TABLE flow_steps (
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id),
    step_id     TEXT NOT NULL,
    -- creation order (an update keeps it)
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    state       TEXT NOT NULL,
    attempt     BIGINT NOT NULL DEFAULT 0,
    run_id      TEXT,
    outputs     TEXT,
    output      TEXT,
    detail      TEXT,
    started_at  BIGINT,
    finished_at BIGINT,
    not_before  BIGINT,
    PRIMARY KEY (flow_run_id, step_id)
) WITH (fillfactor = 80);
CREATE INDEX flow_steps_seq ON flow_steps(flow_run_id, seq);
