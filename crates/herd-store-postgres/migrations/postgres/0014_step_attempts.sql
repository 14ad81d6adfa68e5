-- Every attempt of a workflow run's step: the run (or child workflow run) it ran, when it
-- started and ended, how it ended. Written with the step's row; deleted with the workflow run.
CREATE TABLE flow_step_attempts (
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id),
    step_id     TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    run_id      TEXT,
    state       TEXT NOT NULL,
    detail      TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (flow_run_id, step_id, attempt)
) WITH (fillfactor = 80);

-- Listings of a job's or workflow's runs, newest first.
CREATE INDEX flow_runs_name ON flow_runs(name, created_at);
