// Workflows and jobs: the list, a definition's page with its graph drawn, a run started from
// the form and followed live (steps turn running, then succeeded), a failing step and the
// steps it skips, cancel, apply and delete from the page, and server text shown as text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFleet, openBrowser, login, shot, until } from "./harness.mjs";

const HOSTILE = `<img src=x onerror="window.__pwned=1">`;

const GREET = `name: greet
description: a fans out to b and c
params:
  who: {type: string, required: true, description: who is greeted}
  times: {type: int, default: 2}
steps:
  - id: a
    run: |
      echo "greeting=hello \${{ params.who }}" >> "$HERD_OUTPUT"
      echo 'html=${HOSTILE}' >> "$HERD_OUTPUT"
  - id: b
    needs: [a]
    run: sleep 2; echo b
  - id: c
    needs: [a]
    run: sleep 2; echo c
`;

const FAILING = `name: failing
steps:
  - id: first
    run: echo about to fail; exit 3
  - id: second
    needs: [first]
    run: echo never
  - id: third
    needs: [second]
    run: echo never
`;

let fleet, b;
before(async () => {
  fleet = await startFleet({ agents: [] });
  b = await openBrowser();
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
});

const nodeState = (page, id) => page.locator(`svg.dag [data-step="${id}"]`).getAttribute("data-state");

test("a workflow's page draws its graph; Run from the form; its steps go running, then succeeded", async () => {
  const { page, problems } = b;
  fleet.cli(["workflows", "apply", "-f", "-"], GREET);
  await page.goto(fleet.url + "/workflows");
  await page.locator('[data-def="greet"]').waitFor();
  assert.match(await page.locator('[data-def="greet"]').innerText(), /3 steps/);
  assert.match(await page.locator('[data-def="greet"]').innerText(), /a fans out to b and c/);
  await shot(page, "workflows-list");

  await page.locator('[data-def="greet"]').getByRole("link", { name: "greet" }).click();
  await page.getByTestId("dag").waitFor();
  assert.equal(new URL(page.url()).pathname, "/workflows/greet");
  assert.equal(await page.locator("svg.dag [data-step]").count(), 3);
  assert.equal(await page.locator("svg.dag [data-edge]").count(), 2);
  for (const e of ["a->b", "a->c"]) assert.equal(await page.locator(`svg.dag [data-edge="${e}"]`).count(), 1);
  assert.match(await page.getByTestId("def-source").innerText(), /sleep 2; echo b/);
  // The form follows the parameters: `who` is required, `times` has its default.
  assert.equal(await page.locator("#param-times").inputValue(), "2");
  assert.equal(await page.locator("#param-who").getAttribute("required"), "");
  await page.locator("#param-who").fill("ops");
  await shot(page, "workflow-definition");

  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.waitForURL(/\/workflow-runs\/[0-9a-f]+$/);
  const id = new URL(page.url()).pathname.split("/").pop();
  await page.getByTestId("dag").waitFor();
  let sawRunning = false;
  let shotRunning = false;
  await until(
    async () => {
      const states = await Promise.all(["a", "b", "c"].map((s) => nodeState(page, s)));
      if (states.includes("running")) {
        sawRunning = true;
        if (!shotRunning) {
          shotRunning = true;
          await shot(page, "workflow-run-running");
        }
      }
      return states.every((s) => s === "succeeded");
    },
    30000,
    "every step succeeded",
  );
  assert.ok(sawRunning, "a step was seen running");
  await until(async () => (await page.getByTestId("run-state").innerText()).includes("succeeded"), 10000, "run succeeded");

  // What the server holds matches, and the parameter from the form reached it.
  const run = await fleet.api("GET", `/api/v1/workflow-runs/${id}`);
  assert.equal(run.state, "succeeded");
  assert.equal(run.params.who, "ops");
  assert.equal(String(run.params.times), "2");

  // Outputs are text: the hostile one is shown literally and runs nothing.
  const outs = await page.getByTestId("outputs-a").innerText();
  assert.ok(outs.includes("hello ops"), outs);
  assert.ok(outs.includes(HOSTILE), outs);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  // Each step's attempt links its task's output page.
  const taskLink = page.locator('[data-step-panel="a"] a[href^="/tasks/"]');
  await taskLink.first().waitFor();
  assert.equal(await taskLink.first().innerText(), "alpha");
  await shot(page, "workflow-run-finished");

  // The run is among the workflow's recent runs, and the list shows it as the last one.
  await page.goto(fleet.url + "/workflows/greet");
  await page.locator(`[data-run="${id}"]`).waitFor();
  await page.goto(fleet.url + "/workflows");
  await page.locator(`[data-def="greet"] a[href="/workflow-runs/${id}"]`).waitFor();
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
});

test("a failing step shows failed, the steps after it skipped, and its detail", async () => {
  const { page } = b;
  fleet.cli(["workflows", "apply", "-f", "-"], FAILING);
  const run = await fleet.api("POST", "/api/v1/workflows/failing/runs", {});
  await page.goto(fleet.url + `/workflow-runs/${run.id}`);
  await until(async () => (await nodeState(page, "first")) === "failed", 20000, "first failed");
  await until(async () => (await nodeState(page, "second")) === "skipped", 20000, "second skipped");
  await until(async () => (await nodeState(page, "third")) === "skipped", 20000, "third skipped");
  await until(async () => (await page.getByTestId("run-state").innerText()).includes("failed"), 10000, "run failed");
  assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0);
  assert.match(await page.locator('[data-step-panel="first"]').innerText(), /exit 3/);
  await shot(page, "workflow-run-failed");
});

test("a running workflow run is cancelled from its page", async () => {
  const { page } = b;
  fleet.cli(
    ["workflows", "apply", "-f", "-"],
    "name: slow\nsteps:\n  - id: wait\n    run: sleep 60\n  - id: after\n    needs: [wait]\n    run: echo after\n",
  );
  const run = await fleet.api("POST", "/api/v1/workflows/slow/runs", {});
  await page.goto(fleet.url + `/workflow-runs/${run.id}`);
  await until(async () => (await nodeState(page, "wait")) === "running", 20000, "wait running");
  await page.getByRole("button", { name: "Cancel" }).click();
  await until(async () => (await page.getByTestId("run-state").innerText()).includes("cancelled"), 20000, "run cancelled");
  assert.equal((await fleet.api("GET", `/api/v1/workflow-runs/${run.id}`)).state, "cancelled");
  await until(async () => (await nodeState(page, "after")) !== "pending", 10000, "after not pending");
});

test("apply from the page: a bad definition shows one line with its path; a good one is listed, then deleted", async () => {
  const { page } = b;
  await page.goto(fleet.url + "/workflows");
  const box = page.getByLabel("Apply a workflow (YAML or JSON)");
  await box.fill("name: broken\nsteps:\n  - id: a\n    run: echo a\n  - id: b\n    needs: [zz]\n    run: echo b\n");
  await page.getByRole("button", { name: "Apply" }).click();
  const alert = page.getByTestId("apply-form").getByRole("alert");
  await alert.waitFor();
  const msg = await alert.innerText();
  assert.match(msg, /steps\[1\]\.needs/);
  assert.ok(!msg.includes("\n"), msg);
  await shot(page, "workflow-apply-error");
  assert.equal(await page.locator('[data-def="broken"]').count(), 0);

  await box.fill(`name: from-ui\ndescription: ${HOSTILE}\nsteps:\n  - id: only\n    run: echo hi\n`);
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByTestId("applied").waitFor();
  assert.match(await page.getByTestId("applied").innerText(), /from-ui version 1/);
  const row = page.locator('[data-def="from-ui"]');
  await row.waitFor();
  assert.ok((await row.innerText()).includes(HOSTILE));
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  page.once("dialog", (d) => d.accept());
  await row.getByRole("button", { name: "Delete workflow from-ui" }).click();
  await until(async () => (await page.locator('[data-def="from-ui"]').count()) === 0, 10000, "row gone");
  await assert.rejects(fleet.api("GET", "/api/v1/workflows/from-ui"), /404/);
});

test("jobs have their own list and page (one step, main)", async () => {
  const { page } = b;
  fleet.cli(["jobs", "apply", "-f", "-"], "name: hello-job\nparams:\n  svc: {type: choice, choices: [web, db], required: true}\nrun: echo svc=${{ params.svc }}\n");
  await page.goto(fleet.url + "/jobs");
  await page.locator('[data-def="hello-job"]').getByRole("link", { name: "hello-job" }).click();
  await page.getByTestId("dag").waitFor();
  assert.equal(await page.locator("svg.dag [data-step]").count(), 1);
  assert.equal(await page.locator("#param-svc").inputValue(), "");
  await page.locator("#param-svc").selectOption("db");
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.waitForURL(/\/workflow-runs\//);
  await until(async () => (await nodeState(page, "main")) === "succeeded", 20000, "job succeeded");
  await shot(page, "job-run");
});

test("a viewer sees definitions, graphs and runs, but no Apply, Run, Delete or Cancel", async () => {
  const viewer = await fleet.api("POST", "/api/v1/keys", { name: "looker", role: "viewer" });
  const ctx = await b.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  try {
    await login(page, fleet.url, viewer.key);
    await page.goto(fleet.url + "/workflows");
    await page.locator('[data-def="greet"]').waitFor();
    assert.equal(await page.getByRole("button", { name: /Delete/ }).count(), 0);
    assert.equal(await page.getByTestId("apply-form").count(), 0);
    await page.goto(fleet.url + "/workflows/greet");
    await page.getByTestId("dag").waitFor();
    assert.equal(await page.getByTestId("run-form").count(), 0);
    const run = await fleet.api("POST", "/api/v1/workflows/slow/runs", {});
    await page.goto(fleet.url + `/workflow-runs/${run.id}`);
    await until(async () => (await nodeState(page, "wait")) === "running", 20000, "wait running");
    assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0);
    await fleet.api("POST", `/api/v1/workflow-runs/${run.id}/cancel`);
    await until(async () => (await page.getByTestId("run-state").innerText()).includes("cancelled"), 20000, "cancelled");
  } finally {
    await ctx.close();
  }
});

test("a retried step lists each attempt with its task", async () => {
  const { page } = b;
  const mark = `${fleet.dir}/retry-mark`;
  fleet.cli(
    ["workflows", "apply", "-f", "-"],
    `name: flaky\nsteps:\n  - id: try\n    retries: {count: 2, backoff: 1s}\n    run: if [ -e ${mark} ]; then echo second; else touch ${mark}; echo first; exit 4; fi\n`,
  );
  const run = await fleet.api("POST", "/api/v1/workflows/flaky/runs", {});
  await page.goto(fleet.url + `/workflow-runs/${run.id}`);
  await until(async () => (await nodeState(page, "try")) === "succeeded", 20000, "try succeeded");
  const panel = page.locator('[data-step-panel="try"]');
  await until(async () => (await panel.locator("[data-attempt]").count()) === 2, 10000, "two attempts");
  assert.match(await panel.innerText(), /attempt 2 of 3/);
  const first = panel.locator('[data-attempt="attempt 1"]');
  await first.locator('a[href^="/tasks/"]').waitFor();
  assert.match(await first.innerText(), /failed/);
  assert.match(await first.innerText(), /exit 4/);
  assert.match(await panel.locator('[data-attempt="attempt 2"]').innerText(), /succeeded/);
  // Exactly the attempts the server recorded, in order, each with its own run.
  const shown = await fleet.api("GET", `/api/v1/workflow-runs/${run.id}`);
  const step = shown.steps.find((s) => s.id === "try");
  assert.deepEqual(
    step.attempts.map((a) => [a.attempt, a.state]),
    [
      [1, "failed"],
      [2, "succeeded"],
    ],
  );
  assert.equal(new Set(step.attempts.map((a) => a.run_id)).size, 2);
  assert.equal(step.attempts[1].run_id, step.run_id);
  assert.deepEqual(
    await panel.locator("[data-attempt]").evaluateAll((els) => els.map((e) => [e.dataset.attempt, e.dataset.run])),
    step.attempts.map((a) => [`attempt ${a.attempt}`, a.run_id]),
  );
  for (const a of step.attempts) {
    const r = await fleet.api("GET", `/api/v1/runs/${a.run_id}`);
    assert.equal(r.state, a.state);
  }
  await shot(page, "workflow-run-retried");
  // The definition's page lists this run (the listing narrowed by name).
  await page.goto(fleet.url + "/workflows/flaky");
  await page.locator(`a[href="/workflow-runs/${run.id}"]`).first().waitFor();
});
