//! Every attempt of a workflow run's step, recorded exactly: a step that fails twice and then
//! succeeds lists three attempts, each with its own run in the state that run ended in; a
//! `workflow` step's attempt names its child workflow run; runs are listed by name.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::workflows::{finished, start, step};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn api(s: &Server, path: &str) -> serde_json::Value {
    let (code, body) = s.api_get(path).unwrap();
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn a_retried_step_lists_every_attempt_with_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    for (kind, file, text) in [
        (
            "workflows",
            "inner.yaml",
            "name: inner\nsteps:\n  - {id: e, run: 'echo inner'}\n".to_string(),
        ),
        (
            "workflows",
            "flaky.yaml",
            format!(
                r#"name: flaky
steps:
  - id: flaky
    retries: {{count: 3, backoff: 1s}}
    run: n=$(cat {d}/counter 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/counter; [ $n -ge 3 ]
  - id: child
    needs: [flaky]
    workflow: inner
"#
            ),
        ),
    ] {
        let f = write(dir.path(), file, &text);
        let out = s.run(&[kind, "apply", "-f", &f]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let id = start(&s, "flaky", &["-t", "w1"]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "succeeded", "{r}");
    let flaky = step(&r, "flaky");
    assert_eq!(flaky["attempt"], 3, "{r}");
    let attempts = flaky["attempts"].as_array().unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a["attempt"].as_i64().unwrap(), a["state"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{r}"
    );
    let run_ids: Vec<&str> = attempts
        .iter()
        .map(|a| a["run_id"].as_str().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = run_ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{r}");
    // The last attempt's run is the step's; each attempt's run ended as the attempt did.
    assert_eq!(flaky["run_id"], run_ids[2], "{r}");
    for a in attempts {
        let run = s.json(&["runs", "show", a["run_id"].as_str().unwrap(), "--json"]);
        assert_eq!(run["state"], a["state"], "{run} {a}");
        assert!(a["finished_at"].as_i64().unwrap() >= a["started_at"].as_i64().unwrap());
    }
    assert!(
        attempts[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("exited 1"),
        "{r}"
    );

    // A `workflow` step's attempt names its child workflow run.
    let child = step(&r, "child");
    let child_attempts = child["attempts"].as_array().unwrap();
    assert_eq!(child_attempts.len(), 1, "{r}");
    assert_eq!(child_attempts[0]["workflow_run_id"], child["run_id"], "{r}");
    assert_eq!(child_attempts[0]["state"], "succeeded", "{r}");
    assert!(child_attempts[0].get("run_id").is_none(), "{r}");

    // The CLI lists them.
    let out = s.run(&["workflows", "runs", "show", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("attempts:"), "{text}");
    for run_id in &run_ids {
        assert!(text.contains(run_id), "{text}");
    }

    // Runs listed by name, in the query.
    let named = api(&s, "/api/v1/workflow-runs?name=inner");
    let names: Vec<&str> = named
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inner"], "{named}");
    assert_eq!(api(&s, "/api/v1/workflow-runs?name=flaky")[0]["id"], id);
    assert!(
        api(&s, "/api/v1/workflow-runs?name=nope")
            .as_array()
            .unwrap()
            .is_empty()
    );
    let listed = s.json(&["workflows", "runs", "--name", "flaky", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id, "{listed}");
}
