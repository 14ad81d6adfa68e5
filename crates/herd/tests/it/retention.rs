//! Retention: finished runs older than `--retention` go with their tasks and output files,
//! by `herd gc` (which says what it freed) and by the background pass; a run still going
//! stays, and so does the audit log.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

/// Whether a directory named `name` exists anywhere under `dir`.
fn dir_named(dir: &Path, name: &str) -> bool {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == name {
                    return true;
                }
                todo.push(e.path());
            }
        }
    }
    false
}

fn run_ids(s: &impl Cli) -> Vec<String> {
    s.json(&["runs", "ls", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The one task of `run_id`.
fn task_of(s: &impl Cli, run_id: &str) -> String {
    let r = s.json(&["runs", "show", run_id, "--json"]);
    r["tasks"][0]["id"].as_str().unwrap().to_string()
}

fn finished_run(s: &impl Cli, machine: &str) -> String {
    let out = s.run(&["run", "-t", machine, "--", "echo retained-output"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = s.json(&["runs", "ls", "--json"]);
    runs[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn gc_prunes_old_finished_runs_and_their_output_but_not_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(HERD, dir.path(), "127.0.0.1:0", &["--retention", "2s"]).unwrap();
    let _a = s.agent("g1", &[]).unwrap();
    s.wait_online(&["g1"]).unwrap();

    let old = finished_run(&s, "g1");
    let old_task = task_of(&s, &old);
    assert!(
        dir_named(dir.path(), &old_task),
        "output files of {old_task}"
    );
    // A copy run: its blob goes once unused for longer than the retention.
    let src = dir.path().join("copied.txt");
    std::fs::write(&src, "a file to copy\n").unwrap();
    let dest = dir.path().join("cp-dest");
    std::fs::create_dir_all(&dest).unwrap();
    let out = s.run(&[
        "cp",
        src.to_str().unwrap(),
        "-t",
        &format!("g1:{}/", dest.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let blobs = s.data_dir.join("blobs");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 1);
    let out = s.run(&["run", "-t", "g1", "--detach", "--", "sleep 30"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let going = stdout(&out).trim().to_string();
    // Both are now older than the retention; only the finished one may go.
    std::thread::sleep(Duration::from_millis(2500));

    let report = s.json(&["gc", "--json"]);
    assert_eq!(report["runs"], 2, "{report}");
    assert_eq!(report["tasks"], 2, "{report}");
    assert_eq!(report["blobs"], 1, "{report}");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    let ids = run_ids(&s);
    assert!(!ids.contains(&old), "{ids:?}");
    assert!(ids.contains(&going), "{ids:?}");
    assert!(
        !dir_named(dir.path(), &old_task),
        "output files of {old_task} kept"
    );
    let shown = s.run(&["runs", "show", &old]);
    assert!(!shown.status.success());

    // Nothing more to free: said so in the one line.
    let again = s.run(&["gc"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again).trim(),
        "freed 0 runs, 0 tasks, 0 blobs, 0 workflow runs, 0 schedule fires, 0.0 MB"
    );
    // The audit log keeps the run's creation and records both passes.
    let audit = s.json(&["audit", "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "gc").count(),
        2,
        "{actions:?}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"] == format!("run:{old}")),
        "{audit}"
    );
    assert!(s.run(&["runs", "cancel", &going]).status.success());
}

#[test]
fn the_background_pass_prunes_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &["--retention", "1s", "--retention-interval", "1s"],
    )
    .unwrap();
    let _a = s.agent("b1", &[]).unwrap();
    s.wait_online(&["b1"]).unwrap();
    let old = finished_run(&s, "b1");
    let old_task = task_of(&s, &old);
    wait_for(Duration::from_secs(60), "the run pruned", || {
        (!run_ids(&s).contains(&old)).then_some(())
    });
    assert!(
        !dir_named(dir.path(), &old_task),
        "output files of {old_task} kept"
    );
}
