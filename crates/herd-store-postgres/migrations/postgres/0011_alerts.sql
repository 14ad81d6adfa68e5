-- Fleet health alerts: rules (the rule as the server keeps it, JSON) and the alerts they
-- raised, one row per (rule, machine) from raise to clear. At most one alert of a rule is
-- open on a machine (`alerts_open`), so a raise is recorded once whoever sees it.
CREATE TABLE alert_rules (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE alerts (
    id            TEXT PRIMARY KEY,
    rule          TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    agent_name    TEXT NOT NULL,
    metric        TEXT NOT NULL,
    level         TEXT NOT NULL,
    value         TEXT NOT NULL,
    threshold     TEXT NOT NULL,
    raised_at     BIGINT NOT NULL,
    changed_at    BIGINT NOT NULL,
    cleared_at    BIGINT,
    escalated     BOOLEAN NOT NULL DEFAULT FALSE,
    notified      TEXT,
    runbook_run   TEXT,
    runbook_state TEXT
);
CREATE UNIQUE INDEX alerts_open ON alerts(rule, agent_id) WHERE cleared_at IS NULL;
CREATE INDEX alerts_raised ON alerts(raised_at);
