//! Jobs and workflows end to end: definitions refused with the path of their problem, steps
//! in parallel with data between them, fan-out, and a workflow run that survives the
//! server's SIGKILL without running a step twice.

use std::path::Path;
use std::time::Duration;

use crate::errors::fails_one_line;
use crate::harness::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Starts workflow `name` detached and answers its run's id.
pub(crate) fn start(s: &Server, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["workflows", "run", name, "--detach"];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Waits for a workflow run to end and answers it (with its steps).
pub(crate) fn finished(s: &Server, id: &str, timeout: Duration) -> serde_json::Value {
    wait_for(timeout, "the workflow run to end", || {
        let r = s.json(&["workflows", "runs", "show", id, "--json"]);
        (r["state"] != "running").then_some(r)
    })
}

pub(crate) fn step<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

#[test]
fn definitions_with_mistakes_are_refused_naming_where() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let cases = [
        (
            "cycle.yaml",
            "name: w\nsteps:\n  - {id: a, run: x, needs: [c]}\n  - {id: b, run: x, needs: [a]}\n  - {id: c, run: x, needs: [b]}\n",
            "steps[0].needs: a cycle: a → c → b → a",
        ),
        (
            "unknown.yaml",
            "name: w\nsteps:\n  - {id: build, run: x}\n  - {id: t, run: x, needs: [biuld]}\n",
            "steps[1].needs: unknown step \"biuld\" — did you mean \"build\"?",
        ),
        (
            "expr.yaml",
            "name: w\nsteps:\n  - {id: a, run: x}\n  - {id: b, run: x, needs: [a], if: '${{ steps.a.outputs.n == }}'}\n",
            "steps[1].if: bad expression",
        ),
        (
            "ref.yaml",
            "name: w\nsteps:\n  - {id: build, run: x}\n  - {id: t, run: x, needs: [build], if: '${{ steps.biuld.status == \"succeeded\" }}'}\n",
            "steps[1].if: unknown step \"biuld\" — did you mean \"build\"?",
        ),
        (
            "self.yaml",
            "name: w\nsteps:\n  - {id: a, run: x, needs: [a]}\n",
            "steps[0].needs: step \"a\" needs itself",
        ),
        (
            "keys.yaml",
            "name: w\nsteps:\n  - {id: a, run: x, retires: 3}\n",
            "steps[0]: unknown key \"retires\" — did you mean \"retries\"?",
        ),
        (
            "types.yaml",
            "name: w\nsteps:\n  - {id: a, run: x, needs: b}\n",
            "steps[0].needs: invalid type",
        ),
        (
            "job.yaml",
            "name: w\nsteps:\n  - {id: a, uses: deploi}\n",
            "steps[0].uses: no job \"deploi\"",
        ),
    ];
    for (file, text, needle) in cases {
        let f = write(dir.path(), file, text);
        fails_one_line(&s.run(&["workflows", "apply", "-f", &f]), needle);
    }
    // An anchor bomb and a 10 MB file: refused at once.
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for (p, n) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    let f = write(dir.path(), "bomb.yaml", &bomb);
    fails_one_line(&s.run(&["workflows", "apply", "-f", &f]), "not valid YAML");
    let big = format!(
        "name: w\nsteps:\n  - id: a\n    run: \"{}\"\n",
        "x".repeat(10 << 20)
    );
    let f = write(dir.path(), "big.yaml", &big);
    fails_one_line(
        &s.run(&["workflows", "apply", "-f", &f]),
        "over the limit of 1 MiB",
    );
    // Nothing was stored, and the server answers as before.
    let listed = s.json(&["workflows", "ls", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    let ok = write(
        dir.path(),
        "ok.yaml",
        "name: w\nsteps:\n  - {id: a, run: 'true'}\n",
    );
    let out = s.run(&["workflows", "apply", "-f", &ok]);
    assert!(
        stdout(&out).contains("workflow w version 1"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["workflows", "apply", "-f", &ok]);
    assert!(stdout(&out).contains("unchanged"), "{}", stderr(&out));
    // Parameters are checked when a run starts.
    let p = write(
        dir.path(),
        "p.yaml",
        "name: p\nparams: {n: {type: int, required: true}}\nsteps:\n  - {id: a, run: 'true'}\n",
    );
    assert!(s.run(&["workflows", "apply", "-f", &p]).status.success());
    fails_one_line(
        &s.run(&["workflows", "run", "p"]),
        "parameter \"n\" is required",
    );
    fails_one_line(
        &s.run(&["workflows", "run", "p", "-p", "n=x"]),
        "not an integer",
    );
    fails_one_line(
        &s.run(&["workflows", "run", "nope"]),
        "no workflow \"nope\"",
    );
}

#[test]
fn a_workflow_run_survives_the_servers_sigkill_and_runs_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let log = dir.path().join("effects.log");
    let log = log.to_string_lossy();
    let wf = format!(
        "name: five\nsteps:\n  - {{id: s1, run: 'echo s1 >> {log}'}}\n  - {{id: s2, needs: [s1], run: 'echo s2 >> {log}'}}\n  - {{id: s3, needs: [s2], run: 'sleep 4; echo s3 >> {log}'}}\n  - {{id: s4, needs: [s3], run: 'echo s4 >> {log}'}}\n  - {{id: s5, needs: [s4], run: 'echo s5 >> {log}'}}\n"
    );
    let f = write(dir.path(), "five.yaml", &wf);
    assert!(s.run(&["workflows", "apply", "-f", &f]).status.success());
    let id = start(&s, "five", &["-t", "w1"]);
    // Killed while s3 runs on the agent.
    wait_for(Duration::from_secs(30), "step s3 to run", || {
        let r = s.json(&["workflows", "runs", "show", &id, "--json"]);
        (step(&r, "s3")["state"] == "running").then_some(())
    });
    s.kill9();
    std::thread::sleep(Duration::from_millis(500));
    s.restart().unwrap();
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "succeeded", "{r}");
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    assert_eq!(
        effects.lines().collect::<Vec<_>>(),
        ["s1", "s2", "s3", "s4", "s5"],
        "each step's effect exactly once"
    );
    for st in ["s1", "s2", "s3", "s4", "s5"] {
        assert_eq!(step(&r, st)["attempt"], 1, "{r}");
    }
}

const DIAMOND: &str = r#"
name: diamond
params:
  who: {type: string, default: world}
steps:
  - id: a
    run: herd helper output greeting="hello ${{ params.who }}"
  - id: b
    needs: [a]
    lang: bash
    script: |
      echo "b got $(herd helper input steps.a.outputs.greeting)"
      sleep 1
      echo n=2 >> "$HERD_OUTPUT"
  - id: c
    needs: [a]
    lang: python3
    script: |
      import json, os, time
      i = json.load(open(os.environ["HERD_INPUT"]))
      time.sleep(1)
      with open(os.environ["HERD_OUTPUT"], "a") as o:
          o.write("n=3\nseen=" + i["steps"]["a"]["outputs"]["greeting"] + "\n")
  - id: gate
    needs: [a]
    run: herd helper condition false
  - id: d
    needs: [b, c]
    if: ${{ steps.b.outputs.n == "2" }}
    lang: node
    script: |
      const fs = require("fs");
      const { execSync } = require("child_process");
      const input = JSON.parse(fs.readFileSync(process.env.HERD_INPUT, "utf8"));
      const c = execSync("herd helper input steps.c.outputs.n").toString().trim();
      const total = Number(input.steps.b.outputs.n) + Number(c);
      fs.appendFileSync(process.env.HERD_OUTPUT, `total=${total}\n`);
  - id: e
    needs: [gate]
    if: ${{ steps.gate.condition }}
    run: echo never
  - id: f
    needs: [e]
    run: echo never either
"#;

#[test]
fn a_diamond_runs_its_branches_together_and_passes_data_between_languages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let f = write(dir.path(), "diamond.yaml", DIAMOND);
    let out = s.run(&["workflows", "apply", "-f", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&s.run(&["workflows", "show", "diamond"]));
    for part in [
        "[0] a",
        "[1] b",
        "[1] c",
        "[2] d",
        "◀── b, c",
        "if steps.gate.condition",
    ] {
        assert!(shown.contains(part), "{part:?} in {shown}");
    }

    // Its python step is not read by the command policy: it needs a person's approval.
    let out = s.run(&[
        "workflows",
        "run",
        "diamond",
        "-p",
        "who=herd",
        "-t",
        "w1",
        "--approve",
    ]);
    let followed = stdout(&out);
    assert!(out.status.success(), "{followed}{}", stderr(&out));
    assert!(followed.contains("b got hello herd"), "{followed}");
    let id = followed
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_string();
    let r = s.json(&["workflows", "runs", "show", &id, "--json"]);
    assert_eq!(r["state"], "succeeded", "{r}");
    // B and C ran at the same time.
    let (b, c) = (step(&r, "b"), step(&r, "c"));
    let at = |s: &serde_json::Value, k: &str| s[k].as_i64().unwrap();
    assert!(
        at(b, "started_at") < at(c, "finished_at") && at(c, "started_at") < at(b, "finished_at"),
        "b and c overlap: {b} {c}"
    );
    // Data: python read a's output from HERD_INPUT; node read b's from HERD_INPUT and c's
    // through `herd helper input`.
    assert_eq!(c["outputs"]["outputs"]["seen"], "hello herd", "{c}");
    assert_eq!(step(&r, "d")["outputs"]["outputs"]["total"], "5", "{r}");
    // The helper's condition skipped e, and so f.
    assert_eq!(step(&r, "gate")["outputs"]["condition"], false, "{r}");
    assert_eq!(step(&r, "e")["state"], "skipped", "{r}");
    assert_eq!(step(&r, "f")["state"], "skipped", "{r}");
    assert!(
        step(&r, "f")["detail"]
            .as_str()
            .unwrap()
            .contains("needs e"),
        "{r}"
    );
    let table = stdout(&s.run(&["workflows", "runs", "show", &id]));
    assert!(
        table.contains("total=5") && table.contains("skipped"),
        "{table}"
    );
}

#[test]
fn a_fan_out_step_gives_its_dependant_every_machines_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let token = s.join_token_with(3, &["--label", "role=web"]).unwrap();
    let _agents: Vec<Agent> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| Agent::start(&s, n, &["role=web"], &token, None).unwrap())
        .collect();
    let _db = s.agent("db1", &[]).unwrap();
    s.wait_online(&["w1", "w2", "w3", "db1"]).unwrap();
    let wf = r#"
name: fan
steps:
  - id: each
    targets: ["role=web"]
    run: herd helper output me=$HERD_TASK_ID
  - id: sum
    needs: [each]
    targets: [db1]
    lang: python3
    script: |
      import json, os
      machines = json.load(open(os.environ["HERD_INPUT"]))["steps"]["each"]["machines"]
      ids = sorted(m["outputs"]["me"] for m in machines.values())
      with open(os.environ["HERD_OUTPUT"], "a") as o:
          o.write("names=" + ",".join(sorted(machines)) + "\n")
          o.write("distinct=%d\n" % len(set(ids)))
          o.write("count=${{ steps.each.machines | length }}\n")
"#;
    let f = write(dir.path(), "fan.yaml", wf);
    assert!(s.run(&["workflows", "apply", "-f", &f]).status.success());
    // A python step is not read by the command policy: it needs a person's approval.
    let id = start(&s, "fan", &["--approve"]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "succeeded", "{r}");
    let sum = &step(&r, "sum")["outputs"]["outputs"];
    assert_eq!(sum["names"], "w1,w2,w3", "{r}");
    assert_eq!(sum["distinct"], "3", "{r}");
    assert_eq!(sum["count"], "3", "{r}");
    assert_eq!(
        step(&r, "each")["outputs"]["machines"]
            .as_object()
            .unwrap()
            .len(),
        3,
        "{r}"
    );
}

#[test]
fn jobs_retries_child_workflows_failure_steps_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agent = s.agent("w1", &[]).unwrap();
    s.wait_online(&["w1"]).unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let apply = |kind: &str, file: &str, text: &str| {
        let f = write(dir.path(), file, text);
        let out = s.run(&[kind, "apply", "-f", &f]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    // A job with typed parameters, run by name.
    apply(
        "jobs",
        "greet.yaml",
        "name: greet\nparams:\n  name: {type: string, required: true}\n  times: {type: int, default: 1}\nrun: echo \"hi ${{ params.name }} x${{ params.times }}\"; herd helper output said=hi-${{ params.name }}\n",
    );
    let out = s.run(&["jobs", "run", "greet", "-p", "name=bob", "-t", "w1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hi bob x1"), "{}", stdout(&out));
    fails_one_line(
        &s.run(&["jobs", "run", "greet", "-t", "w1"]),
        "parameter \"name\" is required",
    );
    assert!(stdout(&s.run(&["jobs", "ls"])).contains("greet"));

    apply(
        "workflows",
        "inner.yaml",
        "name: inner\nparams: {x: {type: string}}\nsteps:\n  - {id: e, run: 'herd helper output echo=${{ params.x }}'}\noutputs:\n  echo: ${{ steps.e.outputs.echo }}\n",
    );
    apply(
        "workflows",
        "outer.yaml",
        &format!(
            r#"name: outer
steps:
  - id: hello
    uses: greet
    with: {{name: ann, times: 2}}
  - id: flaky
    needs: [hello]
    retries: {{count: 2, backoff: 1s}}
    run: n=$(cat {d}/counter 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/counter; herd helper var set tries $n; [ $n -ge 2 ]
  - id: child
    needs: [flaky]
    workflow: inner
    with: {{x: "${{{{ steps.hello.outputs.said }}}}"}}
  - id: boom
    needs: [child]
    run: echo "child said ${{{{ steps.child.outputs.echo }}}}"; exit 3
on_failure:
  - {{id: alert, run: 'echo failed >> {d}/effects'}}
always:
  - {{id: cleanup, run: 'echo cleanup >> {d}/effects'}}
"#
        ),
    );
    let id = start(&s, "outer", &["-t", "w1"]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(
        step(&r, "hello")["outputs"]["outputs"]["said"],
        "hi-ann",
        "{r}"
    );
    assert_eq!(step(&r, "flaky")["state"], "succeeded", "{r}");
    assert_eq!(step(&r, "flaky")["attempt"], 2, "{r}");
    assert_eq!(
        step(&r, "child")["outputs"]["outputs"]["echo"],
        "hi-ann",
        "{r}"
    );
    assert_eq!(step(&r, "boom")["state"], "failed", "{r}");
    assert!(
        step(&r, "boom")["detail"]
            .as_str()
            .unwrap()
            .contains("w1 exited 3"),
        "{r}"
    );
    assert_eq!(step(&r, "alert")["state"], "succeeded", "{r}");
    assert_eq!(step(&r, "cleanup")["state"], "succeeded", "{r}");
    let effects = std::fs::read_to_string(dir.path().join("effects")).unwrap();
    assert_eq!(effects.lines().collect::<Vec<_>>(), ["failed", "cleanup"]);
    // The child is a run of its own, linked to its parent step.
    let runs = s.json(&["workflows", "runs", "--json"]);
    let child = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "inner")
        .expect("the child run is listed");
    assert_eq!(child["parent"], format!("{id}/child"), "{child}");
    // `herd helper var set` wrote the workflow's variable, audited as the workflow run.
    let audit = stdout(&s.run(&["audit", "--json"]));
    assert!(audit.contains("var:workflow:outer/tries"), "{audit}");
    let vars = stdout(&s.run(&["vars", "ls", "--scope", "workflow:outer"]));
    assert!(vars.contains("tries") && vars.contains('2'), "{vars}");
    fails_one_line(&s.run(&["vars", "ls", "--scope", "nope"]), "is not one");

    // Cancel: the step under way is cancelled, `always` still runs.
    apply(
        "workflows",
        "slow.yaml",
        &format!(
            "name: slow\nsteps:\n  - {{id: wait, run: 'sleep 60'}}\n  - {{id: after, needs: [wait], run: 'true'}}\nalways:\n  - {{id: tidy, run: 'echo tidy >> {d}/tidy'}}\n"
        ),
    );
    let id = start(&s, "slow", &["-t", "w1"]);
    wait_for(Duration::from_secs(30), "step wait to run", || {
        let r = s.json(&["workflows", "runs", "show", &id, "--json"]);
        (step(&r, "wait")["state"] == "running").then_some(())
    });
    let out = s.run(&["workflows", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "cancelled", "{r}");
    assert_eq!(step(&r, "wait")["state"], "cancelled", "{r}");
    assert_eq!(step(&r, "after")["state"], "cancelled", "{r}");
    assert_eq!(step(&r, "tidy")["state"], "succeeded", "{r}");
    assert!(dir.path().join("tidy").exists());
}

#[test]
fn a_call_step_reads_a_secret_that_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let callee = herd_testkit::callee::HttpCallee::start().unwrap();
    let secret = "tok-7c1e9a-never-stored";
    let out = crate::vars::set_secret(&s, "api_token", secret);
    assert!(out.status.success(), "{}", stderr(&out));
    let wf = format!(
        "name: call\nsteps:\n  - id: hook\n    secrets: {{TOKEN: api_token}}\n    http:\n      method: POST\n      url: {}/hook\n      headers: {{Authorization: 'Bearer ${{{{ secrets.TOKEN }}}}'}}\n      body: {{text: done}}\n      expect: 200\n",
        callee.url
    );
    let f = write(dir.path(), "call.yaml", &wf);
    let out = s.run(&["workflows", "apply", "-f", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = start(&s, "call", &[]);
    let r = finished(&s, &id, Duration::from_secs(60));
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(
        step(&r, "hook")["outputs"]["outputs"]["status"],
        "200",
        "{r}"
    );
    let got = callee.received("/hook");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert!(got[0].body.contains("done"), "{}", got[0].body);
    // Not in the run's record, nor anywhere in the server's files.
    assert!(!r.to_string().contains(secret));
    for f in crate::secrets::files_under(&dir.path().join("server")) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !crate::secrets::contains(&bytes, secret.as_bytes()),
            "the secret is in {}",
            f.display()
        );
    }
}
