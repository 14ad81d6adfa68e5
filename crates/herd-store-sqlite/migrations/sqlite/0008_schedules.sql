-- Schedules and their fires. The firing loop reads the earliest `due_at` of the schedules not
-- paused from an ordered index. A fire is one row per (schedule, fire time), the key that
-- makes it happen once; its run is created in the same transaction. Fires name their runs
-- without a foreign key: retention deletes runs.
CREATE TABLE schedules (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    spec         TEXT NOT NULL,
    target       TEXT NOT NULL,
    overlap      TEXT NOT NULL,
    misfire      TEXT NOT NULL,
    jitter_ms    INTEGER NOT NULL DEFAULT 0,
    paused       INTEGER NOT NULL DEFAULT 0,
    next_fire_at INTEGER,
    due_at       INTEGER,
    last_fire_at INTEGER,
    last_run_id  TEXT,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules(due_at) WHERE paused = 0 AND due_at IS NOT NULL;

CREATE TABLE schedule_fires (
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_at     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    run_id      TEXT,
    run_kind    TEXT,
    detail      TEXT,
    PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_fires_at ON schedule_fires(at);
