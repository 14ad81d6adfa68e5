use super::*;

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
      echo n=2 >> "$HERD_OUTPUT"
  - id: c
    needs: [a]
    lang: python3
    script: |
      import json, os; i = json.load(open(os.environ["HERD_INPUT"]))
      open(os.environ["HERD_OUTPUT"], "a").write("n=3\n")
  - id: d
    needs: [b, c]
    if: ${{ steps.b.outputs.n == "2" }}
    targets: ["role=web"]
    run: echo total=$(( ${{ steps.b.outputs.n }} + ${{ steps.c.outputs.n }} ))
  - id: ping
    needs: [d]
    http: {method: POST, url: "http://127.0.0.1:9/hook", body: {text: "done"}, expect: 200}
on_failure:
  - id: alert
    notify: {webhook: "http://127.0.0.1:9/alert", text: "diamond failed"}
"#;

fn err(text: &str) -> String {
    workflow(text, &NoLookup).unwrap_err()
}

#[test]
fn the_diamond_reads_and_draws() {
    let wf = workflow(DIAMOND, &NoLookup).unwrap();
    assert_eq!(wf.steps.len(), 5);
    assert_eq!(
        wf.steps[3].exec.targets.as_deref(),
        Some(&["role=web".to_string()][..])
    );
    assert_eq!(wf.steps[1].action.kind(), Some(ActionKind::Script));
    let g = Graph::new(&wf.steps);
    assert_eq!(g.levels(), vec![0, 1, 1, 2, 3]);
    let drawn = draw(&wf);
    assert!(drawn.contains("[1] b"), "{drawn}");
    assert!(drawn.contains("◀── b, c"), "{drawn}");
    assert!(drawn.contains("on failure"), "{drawn}");
    // JSON takes the same shape.
    let json = serde_json::to_string(&parse::to_value(DIAMOND).unwrap()).unwrap();
    assert_eq!(workflow(&json, &NoLookup).unwrap(), wf);
}

#[test]
fn cycles_unknown_references_and_bad_expressions_name_their_path() {
    let cycle = "name: w\nsteps:\n  - {id: a, run: x, needs: [c]}\n  - {id: b, run: x, needs: [a]}\n  - {id: c, run: x, needs: [b]}\n";
    let e = err(cycle);
    assert!(e.contains("needs: a cycle: "), "{e}");
    assert!(e.contains("a → c → b → a") || e.contains("→"), "{e}");

    let unknown = "name: w\nsteps:\n  - {id: build, run: x}\n  - {id: t, run: x, needs: [build]}\n  - {id: u, run: x, needs: [t]}\n  - {id: v, run: x, needs: [u], if: '${{ steps.biuld.status == \"succeeded\" }}'}\n";
    assert_eq!(
        err(unknown),
        "steps[3].if: unknown step \"biuld\" — did you mean \"build\"?"
    );
    let bad = "name: w\nsteps:\n  - {id: a, run: 'echo ${{ params.x == }}'}\n";
    let e = err(bad);
    assert!(e.starts_with("steps[0].run: bad expression"), "{e}");
    let unterminated = "name: w\nsteps:\n  - {id: a, run: 'echo ${{ params.x'}\n";
    assert!(err(unterminated).contains("unterminated expression"));
    let itself = "name: w\nsteps:\n  - {id: a, run: x, needs: [a]}\n";
    assert_eq!(err(itself), "steps[0].needs: step \"a\" needs itself");
    let not_needed =
        "name: w\nsteps:\n  - {id: a, run: x}\n  - {id: b, run: 'echo ${{ steps.a.outputs.k }}'}\n";
    assert!(err(not_needed).contains("not among the steps this one needs"));
    let param = "name: w\nparams: {who: {type: string}}\nsteps:\n  - {id: a, run: 'echo ${{ params.woh }}'}\n";
    assert!(err(param).contains("unknown parameter \"woh\" — did you mean \"who\"?"));
}

#[test]
fn shape_and_types() {
    let e = err("name: w\nsteps:\n  - {id: a, run: x, neds: [b]}\n");
    assert_eq!(
        e,
        "steps[0]: unknown key \"neds\" — did you mean \"needs\"?"
    );
    let e = err("name: w\nsteps:\n  - {id: a, run: x, timeout: [1]}\n");
    assert!(e.starts_with("steps[0].timeout: invalid type"), "{e}");
    let e = err("name: w\nsteps:\n  - {id: a, run: x, script: y}\n");
    assert!(e.contains("one action per step"), "{e}");
    let e = err("name: w\nsteps: {}\n");
    assert!(e.starts_with("steps: invalid type"), "{e}");
    let e = err("- a\n- b\n");
    assert!(e.contains("expected a mapping"), "{e}");
    let e = err("name: w\nsteps:\n  - {id: a, run: x, timeout: soon}\n");
    assert_eq!(
        e,
        "steps[0].timeout: \"soon\" is not a duration (30s, 5m, 1h)"
    );
    assert!(err("name: w\nsteps: [{id: a, run: x}, {id: a, run: y}]\n").contains("used twice"));
}

#[test]
fn hostile_inputs_are_refused_quickly() {
    let big = format!(
        "name: w\nsteps:\n  - id: a\n    run: \"{}\"\n",
        "x".repeat(10 << 20)
    );
    assert!(err(&big).contains("over the limit"));
    // The billion laughs: every level doubles nine times.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (p, n) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    let e = err(&bomb);
    assert!(e.contains("not valid YAML"), "{e}");
    let e = err("{\"name\": 1, \"steps\": []}");
    assert!(e.starts_with("name: invalid type"), "{e}");
}

#[test]
fn jobs() {
    let j = job(
        "name: restart\nparams: {svc: {type: choice, choices: [nginx, redis], default: nginx}}\nrun: systemctl restart ${{ params.svc }}\nretries: {count: 2, backoff: 1s, on_exit_codes: [75]}\n",
        &NoLookup,
    )
    .unwrap();
    assert_eq!(j.exec.retries.as_ref().unwrap().count(), 2);
    assert!(j.exec.retries.as_ref().unwrap().retries_exit(Some(75)));
    assert!(!j.exec.retries.as_ref().unwrap().retries_exit(Some(1)));
    assert_eq!(j.as_workflow().steps[0].id, "main");
    let e = job(
        "name: j\nrun: x\nretries: {count: 2, backof: 1s}\n",
        &NoLookup,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "retries: unknown key \"backof\" — did you mean \"backoff\"?"
    );
    let e = job(
        "name: j\nparams: {n: {type: int, default: x}}\nrun: x\n",
        &NoLookup,
    )
    .unwrap_err();
    assert!(
        e.starts_with("params.n.default: parameter \"n\" is \"x\", not an integer"),
        "{e}"
    );
}

#[test]
fn secrets_are_read_by_calls_only() {
    let ok = "name: w\nsteps:\n  - id: a\n    secrets: {TOKEN: api_token}\n    http: {url: 'https://x.example/', headers: {Authorization: 'Bearer ${{ secrets.TOKEN }}'}}\n";
    workflow(ok, &NoLookup).unwrap();
    let unknown = ok.replace("secrets.TOKEN", "secrets.TOKN");
    assert!(err(&unknown).contains("no secret \"TOKN\""));
    let command = "name: w\nsteps:\n  - {id: a, secrets: {T: t}, run: 'echo ${{ secrets.T }}'}\n";
    assert!(
        err(command).contains("as environment variables"),
        "{}",
        err(command)
    );
}
