//! Commands on a run that exists: `herd runs logs RUN [-f]` (every machine's output, as
//! `herd run` shows it) and `herd runs retry RUN [--failed]` (a new run of the same command
//! and spec on the same machines, or on those that did not succeed).

use std::io::Write;

use anyhow::{Result, bail};
use herd_api::{OutputStream, RunRequest, RunWithTasks, Task};
use herd_core::TaskState;

use super::group::Grouped;
use super::render::Output;
use super::{FollowOpts, Show, follow, interrupts, start};
use crate::client::Client;

/// Prints every machine's output of run `id`: what is stored now (exit 0), or with `follow`
/// live until the run ends (exit code as `herd run`'s). `group` prints each distinct output
/// once.
pub async fn logs(c: &Client, id: &str, follow_it: bool, group: bool) -> Result<i32> {
    let r: RunWithTasks = c.get(&format!("/api/v1/runs/{id}")).await?;
    if follow_it {
        let sigint = interrupts()?;
        let ws = c
            .websocket(&format!("/api/v1/runs/{}/attach", r.run.id))
            .await?;
        return follow(
            ws,
            FollowOpts {
                interactive: false,
                tty: false,
                json: false,
                summary: false,
                announce: false,
                resume: format!("herd runs logs {} -f", r.run.id),
                run_id: r.run.id,
                server: c.base.clone(),
                timeout: c.timeout,
                group,
            },
            sigint,
        )
        .await;
    }
    let multi = r.tasks.len() > 1;
    let mut output = Output::new(crate::style::stdout(), crate::style::stderr());
    let mut grouped = group.then(Grouped::default);
    for (index, t) in r.tasks.iter().enumerate() {
        // The name prefixes output lines and heads groups: shown escaped.
        let name = herd_core::escape_controls(&t.agent_name);
        let mut sink = TaskSink {
            output: &mut output,
            grouped: grouped.as_mut(),
            index: index as u32,
            name: &name,
            multi,
        };
        if let Some(g) = sink.grouped.as_mut() {
            g.machine(&name);
        }
        c.download(&format!("/api/v1/tasks/{}/output", t.id), &mut sink)
            .await?;
    }
    output.finish();
    if let Some(g) = grouped {
        let mut out = std::io::stdout().lock();
        out.write_all(&g.render())?;
        out.flush()?;
    }
    Ok(0)
}

/// One task's stored output, written as `herd run` shows it (prefixed by machine when the run
/// has several), or kept for `--group`.
struct TaskSink<'a> {
    output: &'a mut Output,
    grouped: Option<&'a mut Grouped>,
    index: u32,
    name: &'a str,
    multi: bool,
}

impl Write for TaskSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.grouped.as_mut() {
            Some(g) => g.add(self.name, buf),
            None => {
                self.output
                    .write(self.index, OutputStream::Stdout, self.name, self.multi, buf)?
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `herd runs retry` does besides the run it repeats.
pub struct RetryOpts {
    /// Only the machines whose task did not succeed.
    pub failed: bool,
    pub show: Show,
}

/// Starts a new run of run `id`'s command and spec on its machines (with `failed`, those
/// whose task did not succeed), and follows it as `herd run` does.
pub async fn retry(c: &Client, id: &str, o: RetryOpts) -> Result<i32> {
    let r: RunWithTasks = c.get(&format!("/api/v1/runs/{id}")).await?;
    let req = retry_request(&r, o.failed, !o.show.detach)?;
    start(c, &req, o.show).await
}

/// The request that repeats run `r` on its machines (by name), or only on those whose task
/// did not succeed.
fn retry_request(r: &RunWithTasks, failed: bool, start_on_attach: bool) -> Result<RunRequest> {
    let again: Vec<&Task> = r
        .tasks
        .iter()
        .filter(|t| !failed || t.state != TaskState::Succeeded)
        .collect();
    if again.is_empty() {
        if failed {
            bail!(
                "every machine of run {} succeeded — nothing to retry (drop --failed to run it again everywhere)",
                r.run.id
            );
        }
        bail!("run {} has no machines — nothing to retry", r.run.id);
    }
    if let Some(t) = again.iter().find(|t| !t.state.is_terminal()) {
        bail!(
            "run {} is still going ({} is {}) — wait for it (`herd runs logs {} -f`) or cancel it first",
            r.run.id,
            t.agent_name,
            t.state,
            r.run.id
        );
    }
    if !r.run.spec.secret_names.is_empty() {
        bail!(
            "run {} had secret values ({}) that herd does not keep — start it again with `herd run --secret-env …`",
            r.run.id,
            r.run.spec.secret_names.join(", ")
        );
    }
    let mut names: Vec<String> = again
        .iter()
        .map(|t| format!("name={}", t.agent_name))
        .collect();
    names.dedup();
    Ok(RunRequest {
        command: r.run.command.clone(),
        targets: names,
        all: false,
        start_on_attach,
        spec: r.run.spec.clone(),
        secret_env: Default::default(),
        secret_vars: Default::default(),
        approve: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use herd_api::{Run, RunSpec};
    use herd_core::RunState;

    use super::*;

    fn task(name: &str, state: TaskState) -> Task {
        Task {
            id: format!("t-{name}"),
            run_id: "r".into(),
            agent_id: format!("a-{name}"),
            agent_name: name.into(),
            state,
            created_at: 1,
            dispatched_at: None,
            started_at: None,
            finished_at: None,
            pid: None,
            exit_code: None,
            signal: None,
            reason: None,
            detail: None,
            out_seq: 0,
            out_total: 0,
            outputs: Default::default(),
            condition: None,
            supervision: None,
        }
    }

    fn run(tasks: Vec<Task>) -> RunWithTasks {
        RunWithTasks {
            run: Run {
                id: "r".into(),
                command: "uptime".into(),
                selector: "role=web".into(),
                spec: RunSpec {
                    timeout_ms: 5000,
                    ..RunSpec::default()
                },
                created_by: "key:admin".into(),
                created_at: 1,
                cancel_requested: false,
                state: RunState::Failed,
                finished_at: Some(2),
            },
            tasks,
        }
    }

    #[test]
    fn a_retry_repeats_the_run_on_its_machines_or_the_failed_ones() {
        use TaskState::*;
        let r = run(vec![
            task("a", Succeeded),
            task("b", Failed),
            task("c", Lost),
            task("d", TimedOut),
        ]);
        let all = retry_request(&r, false, true).unwrap();
        assert_eq!(all.targets, ["name=a", "name=b", "name=c", "name=d"]);
        assert_eq!(
            (all.command.as_str(), all.spec.timeout_ms),
            ("uptime", 5000)
        );
        assert!(all.start_on_attach && !all.all);
        let failed = retry_request(&r, true, false).unwrap();
        assert_eq!(failed.targets, ["name=b", "name=c", "name=d"]);
        assert!(!failed.start_on_attach);

        let ok = run(vec![task("a", Succeeded)]);
        let e = retry_request(&ok, true, true).unwrap_err().to_string();
        assert!(e.contains("every machine of run r succeeded"), "{e}");
        let going = run(vec![task("a", Running)]);
        let e = retry_request(&going, false, true).unwrap_err().to_string();
        assert!(e.contains("is still going"), "{e}");
    }
}
