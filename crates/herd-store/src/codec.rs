//! How typed rows are stored and read back, the same for every backend. JSON columns are
//! written with [`json`] (and [`metrics_json`]). A backend shows a fetched row as plain
//! columns ([`StoredRow`]: text, integers, flags); the functions named after the rows turn
//! them into [`AgentRow`], [`TaskRow`], ... A value that does not decode (an unknown state
//! name, JSON that does not parse into its type, a negative count) is
//! [`StoreError::Corrupt`] naming the table, the column and the row, never a default.

use std::fmt::Display;
use std::str::FromStr;

use herd_core::{Metrics, OutputPos, TaskState};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::*;
use crate::{
    AlertRow, AlertRuleRow, DefinitionRow, FireEntry, FireRow, FlowRunRow, FlowStepRow,
    LangflowRow, Result, ScheduleRow, SourceRow, StepAttemptRow, StoreError,
};

/// The JSON text a column stores for `value`.
pub fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot encode a value as JSON: {e}")))
}

/// The JSON text of `m`, with values that are not finite numbers stored as 0 (JSON has no
/// NaN: it would be written as `null` and the row could not be read back).
pub fn metrics_json(m: &Metrics) -> Result<String> {
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    json(&Metrics {
        cpu_percent: finite(m.cpu_percent),
        load1: finite(m.load1),
        load5: finite(m.load5),
        load15: finite(m.load15),
        ..m.clone()
    })
}

/// One fetched row as plain columns, by name. An `Err` says why the column could not be
/// read as that type (the backend's own words).
pub trait StoredRow {
    fn text(&self, col: &str) -> std::result::Result<String, String>;
    fn opt_text(&self, col: &str) -> std::result::Result<Option<String>, String>;
    fn int(&self, col: &str) -> std::result::Result<i64, String>;
    fn opt_int(&self, col: &str) -> std::result::Result<Option<i64>, String>;
    fn flag(&self, col: &str) -> std::result::Result<bool, String>;
}

/// A row's columns, read with errors that name the table, the column and the row.
struct Cols<'a> {
    row: &'a dyn StoredRow,
    table: &'static str,
    key: String,
}

impl<'a> Cols<'a> {
    /// Reads the row's text `id` first, so later errors can name the row.
    fn by_text_id(row: &'a dyn StoredRow, table: &'static str, kind: &str) -> Result<Cols<'a>> {
        let id = row.text("id").map_err(|why| StoreError::Corrupt {
            what: format!("{table}.id"),
            why,
        })?;
        Ok(Cols {
            row,
            table,
            key: format!("{kind} {id}"),
        })
    }

    fn corrupt(&self, col: &str, why: impl Display) -> StoreError {
        StoreError::Corrupt {
            what: format!("{}.{col} of {}", self.table, self.key),
            why: why.to_string(),
        }
    }

    fn text(&self, col: &str) -> Result<String> {
        self.row.text(col).map_err(|w| self.corrupt(col, w))
    }

    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.row.opt_text(col).map_err(|w| self.corrupt(col, w))
    }

    fn int(&self, col: &str) -> Result<i64> {
        self.row.int(col).map_err(|w| self.corrupt(col, w))
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.row.opt_int(col).map_err(|w| self.corrupt(col, w))
    }

    fn flag(&self, col: &str) -> Result<bool> {
        self.row.flag(col).map_err(|w| self.corrupt(col, w))
    }

    fn unsigned(&self, col: &str) -> Result<u64> {
        let v = self.int(col)?;
        u64::try_from(v).map_err(|_| self.corrupt(col, format!("{v} is negative")))
    }

    fn parsed<T>(&self, col: &str) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.text(col)?.parse().map_err(|e| self.corrupt(col, e))
    }

    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T> {
        let text = self.text(col)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(col, format!("{e} in {text:?}")))
    }

    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.corrupt(col, format!("{e} in {text:?}"))),
        }
    }
}

pub fn agent(row: &dyn StoredRow) -> Result<AgentRow> {
    let c = Cols::by_text_id(row, "agents", "agent")?;
    Ok(AgentRow {
        name: c.text("name")?,
        cred_hash: c.text("cred_hash")?,
        labels: c.json("labels")?,
        label_edits: c.json("server_labels")?,
        allowed_labels: c.opt_json("allowed_labels")?,
        facts: c.json("facts")?,
        metrics: c.opt_json("metrics")?,
        version: c.text("version")?,
        created_at: c.int("created_at")?,
        last_seen: c.opt_int("last_seen")?,
        revoked_at: c.opt_int("revoked_at")?,
        id: c.text("id")?,
    })
}

pub fn api_key(row: &dyn StoredRow) -> Result<ApiKeyRow> {
    let c = Cols::by_text_id(row, "api_keys", "API key")?;
    Ok(ApiKeyRow {
        id: c.text("id")?,
        name: c.text("name")?,
        hash: c.text("hash")?,
        role: c.text("role")?,
        scope: c.opt_text("scope")?,
        created_at: c.int("created_at")?,
        created_by: c.text("created_by")?,
        revoked_at: c.opt_int("revoked_at")?,
    })
}

pub fn policy(row: &dyn StoredRow) -> Result<PolicyRow> {
    let version = row.int("version").map_err(|why| StoreError::Corrupt {
        what: "policies.version".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "policies",
        key: format!("policy version {version}"),
    };
    Ok(PolicyRow {
        version,
        body: c.text("body")?,
        created_at: c.int("created_at")?,
        created_by: c.text("created_by")?,
    })
}

pub fn var(row: &dyn StoredRow) -> Result<VarRow> {
    let key = row.text("key").map_err(|why| StoreError::Corrupt {
        what: "vars.key".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "vars",
        key: format!("variable {key}"),
    };
    Ok(VarRow {
        scope: c.text("scope")?,
        key: c.text("key")?,
        value: c.text("value")?,
        secret: c.flag("secret")?,
        updated_at: c.int("updated_at")?,
        updated_by: c.text("updated_by")?,
    })
}

pub fn definition(row: &dyn StoredRow) -> Result<DefinitionRow> {
    let name = row.text("name").map_err(|why| StoreError::Corrupt {
        what: "definitions.name".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "definitions",
        key: format!("definition {name}"),
    };
    Ok(DefinitionRow {
        kind: c.parsed("kind")?,
        name: c.text("name")?,
        version: c.int("version")?,
        body: c.text("body")?,
        source: c.text("source")?,
        created_at: c.int("created_at")?,
        created_by: c.text("created_by")?,
    })
}

pub fn flow_run(row: &dyn StoredRow) -> Result<FlowRunRow> {
    let c = Cols::by_text_id(row, "flow_runs", "workflow run")?;
    Ok(FlowRunRow {
        id: c.text("id")?,
        kind: c.parsed("kind")?,
        name: c.text("name")?,
        version: c.int("version")?,
        definition: c.text("definition")?,
        params: c.text("params")?,
        sealed: c.text("sealed")?,
        targets: c.json("targets")?,
        state: c.parsed("state")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
        finished_at: c.opt_int("finished_at")?,
        cancel_requested: c.flag("cancel_requested")?,
        parent: c.opt_text("parent")?,
    })
}

pub fn flow_step(row: &dyn StoredRow) -> Result<FlowStepRow> {
    let key = |col: &str| {
        row.text(col).map_err(|why| StoreError::Corrupt {
            what: format!("flow_steps.{col}"),
            why,
        })
    };
    let (run, step) = (key("flow_run_id")?, key("step_id")?);
    let c = Cols {
        row,
        table: "flow_steps",
        key: format!("step {run}/{step}"),
    };
    Ok(FlowStepRow {
        state: c.parsed("state")?,
        attempt: c.int("attempt")?,
        run_id: c.opt_text("run_id")?,
        outputs: c.opt_text("outputs")?,
        output: c.opt_text("output")?,
        detail: c.opt_text("detail")?,
        started_at: c.opt_int("started_at")?,
        finished_at: c.opt_int("finished_at")?,
        not_before: c.opt_int("not_before")?,
        flow_run_id: run,
        step_id: step,
    })
}

pub fn step_attempt(row: &dyn StoredRow) -> Result<StepAttemptRow> {
    let key = |col: &str| {
        row.text(col).map_err(|why| StoreError::Corrupt {
            what: format!("flow_step_attempts.{col}"),
            why,
        })
    };
    let (run, step) = (key("flow_run_id")?, key("step_id")?);
    let attempt = row.int("attempt").map_err(|why| StoreError::Corrupt {
        what: "flow_step_attempts.attempt".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "flow_step_attempts",
        key: format!("attempt {run}/{step}#{attempt}"),
    };
    Ok(StepAttemptRow {
        run_id: c.opt_text("run_id")?,
        state: c.parsed("state")?,
        detail: c.opt_text("detail")?,
        started_at: c.int("started_at")?,
        finished_at: c.opt_int("finished_at")?,
        flow_run_id: run,
        step_id: step,
        attempt,
    })
}

pub fn join_token(row: &dyn StoredRow) -> Result<JoinTokenRow> {
    let c = Cols::by_text_id(row, "join_tokens", "join token")?;
    Ok(JoinTokenRow {
        id: c.text("id")?,
        hash: c.text("hash")?,
        created_at: c.int("created_at")?,
        created_by: c.text("created_by")?,
        expires_at: c.int("expires_at")?,
        uses_left: c.int("uses_left")?,
        labels: c.opt_json("labels")?,
    })
}

pub fn run(row: &dyn StoredRow) -> Result<RunRow> {
    let c = Cols::by_text_id(row, "runs", "run")?;
    Ok(RunRow {
        id: c.text("id")?,
        command: c.text("command")?,
        selector: c.text("selector")?,
        spec: c.json("spec")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
        cancel_requested: c.flag("cancel_requested")?,
        state: c.parsed("state")?,
        finished_at: c.opt_int("finished_at")?,
    })
}

pub fn task(row: &dyn StoredRow) -> Result<TaskRow> {
    let c = Cols::by_text_id(row, "tasks", "task")?;
    Ok(TaskRow {
        id: c.text("id")?,
        run_id: c.text("run_id")?,
        agent_id: c.text("agent_id")?,
        agent_name: c.text("agent_name")?,
        state: c.parsed("state")?,
        created_at: c.int("created_at")?,
        dispatched_at: c.opt_int("dispatched_at")?,
        started_at: c.opt_int("started_at")?,
        finished_at: c.opt_int("finished_at")?,
        pid: c.opt_int("pid")?,
        exit_code: c.opt_int("exit_code")?,
        signal: c.opt_int("signal")?,
        reason: c.opt_text("reason")?,
        detail: c.opt_text("detail")?,
        outputs: c.opt_text("outputs")?,
        supervision: c.opt_text("supervision")?,
        out_seq: c.unsigned("out_seq")?,
        output: OutputPos {
            total: c.unsigned("out_total")?,
            head_len: c.unsigned("out_head_len")?,
            tail_seg: c.unsigned("out_tail_seg")?,
            tail_len: c.unsigned("out_tail_len")?,
        },
    })
}

pub fn audit(row: &dyn StoredRow) -> Result<AuditRow> {
    let id = row.int("id").map_err(|why| StoreError::Corrupt {
        what: "audit.id".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "audit",
        key: format!("entry {id}"),
    };
    Ok(AuditRow {
        id,
        at: c.int("at")?,
        actor: c.text("actor")?,
        action: c.text("action")?,
        target: c.text("target")?,
        detail: c.json("detail")?,
    })
}

/// A `(state, count)` row of a count of tasks by state.
pub fn state_count(row: &dyn StoredRow) -> Result<(TaskState, i64)> {
    let c = Cols {
        row,
        table: "tasks",
        key: "the count of tasks by state".into(),
    };
    Ok((c.parsed("state")?, c.int("count")?))
}

/// A task's stored state, read back by id (e.g. from a `RETURNING` list).
pub fn task_state(id: &str, state: &str) -> Result<TaskState> {
    state
        .parse()
        .map_err(|e: herd_core::ParseStateError| StoreError::Corrupt {
            what: format!("tasks.state of task {id}"),
            why: e.to_string(),
        })
}

pub fn schedule(row: &dyn StoredRow) -> Result<ScheduleRow> {
    let c = Cols::by_text_id(row, "schedules", "schedule")?;
    Ok(ScheduleRow {
        id: c.text("id")?,
        name: c.text("name")?,
        spec: c.text("spec")?,
        target: c.text("target")?,
        overlap: c.text("overlap")?,
        misfire: c.text("misfire")?,
        jitter_ms: c.int("jitter_ms")?,
        paused: c.flag("paused")?,
        next_fire_at: c.opt_int("next_fire_at")?,
        due_at: c.opt_int("due_at")?,
        last_fire_at: c.opt_int("last_fire_at")?,
        last_run_id: c.opt_text("last_run_id")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
        revision: c.int("revision")?,
    })
}

/// A fire row selected with `fire_`-prefixed columns and the state of its run
/// (`run_state`, `run_finished_at`).
pub fn fire_entry(row: &dyn StoredRow) -> Result<FireEntry> {
    let id = row
        .text("fire_schedule_id")
        .map_err(|why| StoreError::Corrupt {
            what: "schedule_fires.schedule_id".into(),
            why,
        })?;
    let c = Cols {
        row,
        table: "schedule_fires",
        key: format!("fire of schedule {id}"),
    };
    Ok(FireEntry {
        fire: FireRow {
            schedule_id: id,
            fire_at: c.int("fire_fire_at")?,
            at: c.int("fire_at_ms")?,
            outcome: c.text("fire_outcome")?,
            run_id: c.opt_text("fire_run_id")?,
            run_kind: c.opt_text("fire_run_kind")?,
            detail: c.opt_text("fire_detail")?,
        },
        run_state: c.opt_text("run_state")?,
        run_finished_at: c.opt_int("run_finished_at")?,
    })
}

pub fn langflow_source(row: &dyn StoredRow) -> Result<SourceRow> {
    let name = row.text("name").map_err(|why| StoreError::Corrupt {
        what: "langflow_sources.name".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "langflow_sources",
        key: format!("source {name}"),
    };
    Ok(SourceRow {
        name: c.text("name")?,
        url: c.text("url")?,
        key_sealed: c.text("key_sealed")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
        synced_at: c.opt_int("synced_at")?,
    })
}

pub fn langflow(row: &dyn StoredRow) -> Result<LangflowRow> {
    let c = Cols::by_text_id(row, "langflows", "flow")?;
    Ok(LangflowRow {
        source: c.text("source")?,
        id: c.text("id")?,
        name: c.text("name")?,
        description: c.text("description")?,
        endpoint_name: c.opt_text("endpoint_name")?,
        updated_at: c.opt_text("updated_at")?,
        summary: c.text("summary")?,
        removed_at: c.opt_int("removed_at")?,
        synced_at: c.int("synced_at")?,
    })
}

pub fn ask_run(row: &dyn StoredRow) -> Result<crate::AskRunRow> {
    let id = row.text("run_id").map_err(|why| StoreError::Corrupt {
        what: "ask_runs.run_id".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "ask_runs",
        key: format!("run {id}"),
    };
    Ok(crate::AskRunRow {
        run_id: id,
        plan_id: c.text("plan_id")?,
        request: c.text("request")?,
        plan: c.text("plan")?,
        unattended: c.flag("unattended")?,
        summary: c.opt_text("summary")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
    })
}

pub fn ask_attempt(row: &dyn StoredRow) -> Result<crate::AskAttemptRow> {
    let id = row.text("run_id").map_err(|why| StoreError::Corrupt {
        what: "ask_attempts.run_id".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "ask_attempts",
        key: format!("run {id}"),
    };
    Ok(crate::AskAttemptRow {
        run_id: id,
        step_id: c.text("step_id")?,
        attempt: c.int("attempt")?,
        origin: c.text("origin")?,
        command: c.text("command")?,
        description: c.text("description")?,
        check: c.text("check_json")?,
        approval: c.text("approval")?,
        task_run_id: c.opt_text("task_run_id")?,
        validation: c.opt_text("validation")?,
        created_at: c.int("created_at")?,
    })
}

pub fn ask_exchange(row: &dyn StoredRow) -> Result<crate::AskExchangeRow> {
    let c = Cols::by_text_id(row, "ask_exchanges", "exchange")?;
    Ok(crate::AskExchangeRow {
        id: c.text("id")?,
        plan_id: c.text("plan_id")?,
        kind: c.text("kind")?,
        step_id: c.opt_text("step_id")?,
        at: c.int("at")?,
        model: c.text("model")?,
        tokens: c.int("tokens")?,
        request: c.text("request")?,
        answer: c.text("answer")?,
        error: c.opt_text("error")?,
    })
}

pub fn alert_rule(row: &dyn StoredRow) -> Result<AlertRuleRow> {
    let name = row.text("name").map_err(|why| StoreError::Corrupt {
        what: "alert_rules.name".into(),
        why,
    })?;
    let c = Cols {
        row,
        table: "alert_rules",
        key: format!("rule {name}"),
    };
    Ok(AlertRuleRow {
        name: c.text("name")?,
        spec: c.text("spec")?,
        created_by: c.text("created_by")?,
        created_at: c.int("created_at")?,
    })
}

pub fn alert(row: &dyn StoredRow) -> Result<AlertRow> {
    let c = Cols::by_text_id(row, "alerts", "alert")?;
    let number = |col: &str| -> Result<f64> {
        let v: f64 = c.parsed(col)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(c.corrupt(col, format!("{v} is not a number")))
        }
    };
    Ok(AlertRow {
        id: c.text("id")?,
        rule: c.text("rule")?,
        agent_id: c.text("agent_id")?,
        agent_name: c.text("agent_name")?,
        metric: c.text("metric")?,
        level: c.text("level")?,
        value: number("value")?,
        threshold: number("threshold")?,
        raised_at: c.int("raised_at")?,
        changed_at: c.int("changed_at")?,
        cleared_at: c.opt_int("cleared_at")?,
        escalated: c.flag("escalated")?,
        notified: c.opt_text("notified")?,
        runbook_run: c.opt_text("runbook_run")?,
        runbook_state: c.opt_text("runbook_state")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A row of text and integer columns, as a backend would show it.
    struct Row(HashMap<&'static str, Option<&'static str>>);

    impl StoredRow for Row {
        fn text(&self, col: &str) -> std::result::Result<String, String> {
            self.opt_text(col)?.ok_or_else(|| "unexpected NULL".into())
        }
        fn opt_text(&self, col: &str) -> std::result::Result<Option<String>, String> {
            let v = self.0.get(col).ok_or("no such column")?;
            Ok(v.map(str::to_string))
        }
        fn int(&self, col: &str) -> std::result::Result<i64, String> {
            self.opt_int(col)?.ok_or_else(|| "unexpected NULL".into())
        }
        fn opt_int(&self, col: &str) -> std::result::Result<Option<i64>, String> {
            self.opt_text(col)?
                .map(|v| v.parse().map_err(|e| format!("{e}")))
                .transpose()
        }
        fn flag(&self, col: &str) -> std::result::Result<bool, String> {
            Ok(self.int(col)? != 0)
        }
    }

    fn task_row(state: &'static str, out_seq: &'static str) -> Row {
        let mut m: HashMap<&'static str, Option<&'static str>> = [
            ("id", Some("t1")),
            ("run_id", Some("r1")),
            ("agent_id", Some("a1")),
            ("agent_name", Some("m1")),
            ("created_at", Some("1")),
            ("out_total", Some("0")),
            ("out_head_len", Some("0")),
            ("out_tail_seg", Some("0")),
            ("out_tail_len", Some("0")),
        ]
        .into_iter()
        .collect();
        for col in [
            "dispatched_at",
            "started_at",
            "finished_at",
            "pid",
            "exit_code",
            "signal",
            "reason",
            "detail",
            "outputs",
            "supervision",
        ] {
            m.insert(col, None);
        }
        m.insert("state", Some(state));
        m.insert("out_seq", Some(out_seq));
        Row(m)
    }

    #[test]
    fn metrics_that_are_not_numbers_are_stored_as_zero() {
        let m = Metrics {
            cpu_percent: f64::NAN,
            load1: f64::INFINITY,
            load5: 1.5,
            ..Default::default()
        };
        let back: Metrics = serde_json::from_str(&metrics_json(&m).unwrap()).unwrap();
        assert_eq!((back.cpu_percent, back.load1, back.load5), (0.0, 0.0, 1.5));
    }

    #[test]
    fn a_value_that_does_not_decode_names_its_row_and_column() {
        assert_eq!(task(&task_row("running", "4")).unwrap().out_seq, 4);
        let cases = [
            (
                task_row("exploded", "4"),
                "tasks.state of task t1",
                "exploded",
            ),
            (task_row("running", "-2"), "tasks.out_seq of task t1", "-2"),
            (
                task_row("running", "x"),
                "tasks.out_seq of task t1",
                "invalid",
            ),
        ];
        for (row, want_what, want_why) in cases {
            match task(&row) {
                Err(StoreError::Corrupt { what, why }) => {
                    assert_eq!(what, want_what);
                    assert!(why.contains(want_why), "{why}");
                }
                other => panic!("{want_what}: {other:?}"),
            }
        }
    }
}
