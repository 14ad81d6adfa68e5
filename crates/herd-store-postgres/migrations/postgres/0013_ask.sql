-- herd ask: a plan's run (beside its workflow run), every attempt of its steps, and every
-- exchange with the model (redacted before it is stored).
CREATE TABLE ask_runs (
    run_id     TEXT PRIMARY KEY,
    plan_id    TEXT NOT NULL,
    request    TEXT NOT NULL,
    plan       TEXT NOT NULL,
    unattended BOOLEAN NOT NULL,
    summary    TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE ask_attempts (
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    origin      TEXT NOT NULL,
    command     TEXT NOT NULL,
    description TEXT NOT NULL,
    check_json  TEXT NOT NULL,
    approval    TEXT NOT NULL,
    task_run_id TEXT,
    validation  TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (run_id, step_id, attempt)
);

CREATE TABLE ask_exchanges (
    id       TEXT PRIMARY KEY,
    plan_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    step_id  TEXT,
    at       BIGINT NOT NULL,
    model    TEXT NOT NULL,
    tokens   BIGINT NOT NULL,
    request  TEXT NOT NULL,
    answer   TEXT NOT NULL,
    error    TEXT
);
CREATE INDEX ask_exchanges_plan ON ask_exchanges(plan_id, at);
