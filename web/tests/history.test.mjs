// History (runs and tasks, filters in the URL), a task's page (output, search, follow,
// download, hostile output as text), Audit, and Settings (keys, join tokens, variables and
// secrets, the command policy), as an admin and as a viewer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startFleet, openBrowser, login, shot, until } from "./harness.mjs";

let fleet, b;
const hostile = `<img src=x onerror="window.__pwned=1">`;
const runs = {};

/** The task of a finished run (POST ... ?wait=true answers the run with its tasks). */
const runWait = (command, target) =>
  fleet.api("POST", "/api/v1/runs?wait=true", { command, targets: [target] });

before(async () => {
  fleet = await startFleet();
  b = await openBrowser();
  runs.ok = await runWait("echo history-ok", "alpha");
  runs.fail = await runWait("echo history-fail >&2; exit 3", "beta");
  runs.words = await runWait(
    "for i in 1 2 3; do echo apple-$i; done; echo banana; sleep 0.3; echo apple again >&2; sleep 0.3; seq 1 5000",
    "alpha",
  );
  runs.hostile = await runWait(`echo '${hostile}'; printf 'x%.0s' $(seq 1 3000); echo needle-far`, "beta");
  // And one through the CLI.
  fleet.cli(["run", "--color", "never", "-t", "beta", "--", "echo", "via-cli"]);
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
});

test("History lists the runs newest first; state=failed narrows the list and is in the URL", async () => {
  const { page } = b;
  await page.getByRole("link", { name: "History" }).click();
  await page.waitForURL(/\/runs$/);
  for (const r of [runs.ok, runs.fail, runs.words, runs.hostile]) await page.locator(`[data-run="${r.id}"]`).waitFor();
  await until(async () => (await page.locator("[data-run]").count()) === 5, 10000, "5 runs");
  // Newest first: the CLI's run, then the hostile one.
  assert.match(await page.locator("[data-run]").first().innerText(), /via-cli/);
  assert.equal(await page.locator("[data-run]").nth(1).getAttribute("data-run"), runs.hostile.id);
  // The hostile command is text.
  assert.ok((await page.getByTestId("runs").innerText()).includes(hostile));
  await shot(page, "history");

  await page.getByLabel("State").selectOption("failed");
  await until(async () => (await page.locator("[data-run]").count()) === 1, 10000, "one failed run");
  await page.locator(`[data-run="${runs.fail.id}"]`).waitFor();
  assert.ok(page.url().includes("state=failed"), page.url());
  await shot(page, "history-failed");

  // Since: a custom time is in the URL too (an hour ago keeps every run; a day ahead none).
  await page.getByLabel("State").selectOption("");
  await page.getByLabel("Since", { exact: true }).selectOption("custom");
  await until(async () => /since=\d{4}-\d\d-\d\dT/.test(page.url()), 5000, "custom since in the URL");
  await until(async () => (await page.locator("[data-run]").count()) === 5, 10000, "5 runs in the last hour");
  const tomorrow = new Date(Date.now() + 86400_000);
  const pad = (n) => String(n).padStart(2, "0");
  await page
    .getByLabel("Since (local time)")
    .fill(`${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}T00:00`);
  await until(async () => (await page.locator("[data-run]").count()) === 0, 10000, "no runs from tomorrow");
  await page.getByText("No runs match.").waitFor();
  await page.getByLabel("Since", { exact: true }).selectOption("24h");
  await until(async () => (await page.locator("[data-run]").count()) === 5, 10000, "5 runs in a day");
  assert.ok(page.url().includes("since=24h"), page.url());

  // The filter comes back from the URL; the Tasks tab keeps it.
  await page.goto(fleet.url + "/runs?state=failed&machine=beta");
  await page.locator(`[data-run="${runs.fail.id}"]`).waitFor();
  assert.equal(await page.getByLabel("State").inputValue(), "failed");
  assert.equal(await page.getByLabel("Machine").inputValue(), "beta");
  await page.getByRole("link", { name: "Tasks", exact: true }).click();
  await page.waitForURL(/\/tasks\?/);
  assert.ok(page.url().includes("state=failed") && page.url().includes("machine=beta"), page.url());
  const failTask = runs.fail.tasks[0].id;
  await page.locator(`[data-task="${failTask}"]`).waitFor();
  assert.equal(await page.locator("[data-task]").count(), 1);
  await shot(page, "tasks");

  // A filter the server refuses is shown as its one line.
  await page.goto(fleet.url + "/tasks?state=bogus");
  await page.getByRole("alert").first().waitFor();
  assert.ok(!(await page.getByRole("alert").first().innerText()).includes("\n"));

  // The run's link goes to its page; the task's to the task's page.
  await page.goto(fleet.url + "/tasks?state=failed");
  await page.locator(`[data-task="${failTask}"] a[href="/tasks/${failTask}"]`).click();
  await page.waitForURL(new RegExp(`/tasks/${failTask}$`));
  await page.getByTestId("task-facts").waitFor();
  await until(async () => (await page.getByTestId("task-output").innerText()).includes("history-fail"), 10000, "output");
  assert.match(await page.getByTestId("task-facts").innerText(), /Exit\s+3/);
  assert.equal(await page.locator(".hout-line.err", { hasText: "history-fail" }).count(), 1);
});

test("a task's page: output, search with a match count, virtualised lines, Download gives the bytes", async () => {
  const { page } = b;
  const task = runs.words.tasks[0];
  await page.goto(`${fleet.url}/tasks/${task.id}`);
  const out = page.getByTestId("task-output");
  await until(async () => (await out.innerText()).includes("apple-1"), 10000, "output shown");
  assert.equal(await page.locator(`[data-testid="task-facts"] a[href="/machines/alpha"]`).count(), 1);
  assert.match(await page.getByTestId("task-facts").innerText(), /succeeded/);
  // 5,000+ lines, only those in view are in the page.
  assert.match(await page.locator(".hout-status").innerText(), /5005 lines/);
  const rendered = await page.locator(".hout-line").count();
  assert.ok(rendered > 10 && rendered < 200, `${rendered} lines rendered`);
  // stderr is marked.
  assert.equal(await page.locator(".hout-line.err", { hasText: "apple again" }).count(), 1);

  await page.getByLabel("Search the output").fill("apple");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 4 matches", 5000, "4 matches");
  await page.getByRole("button", { name: "Next match" }).click();
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "2 of 4 matches", 5000, "2 of 4");
  assert.equal(await page.locator(".hout-line mark.cur").innerText(), "apple");
  await page.getByRole("button", { name: "Previous match" }).click();
  await page.getByRole("button", { name: "Previous match" }).click();
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "4 of 4 matches", 5000, "wraps");
  // A match far down: the view jumps to it.
  await page.getByLabel("Search the output").fill("4999");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 1 match", 5000, "1 match");
  await until(async () => (await page.locator(".hout-line mark.cur").count()) === 1, 5000, "the far match in view");
  assert.equal(await page.locator(".hout-line mark.cur").innerText(), "4999");
  await page.getByLabel("Search the output").fill("apple");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 4 matches", 5000, "back");
  await shot(page, "task");
  await page.emulateMedia({ colorScheme: "dark" });
  await shot(page, "task-dark");
  await page.emulateMedia({ colorScheme: "light" });
  await page.getByLabel("Search the output").press("Escape");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "", 5000, "search cleared");

  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
  const got = readFileSync(await dl.path());
  const res = await fetch(`${fleet.url}/api/v1/tasks/${task.id}/output`, { headers: { Authorization: `Bearer ${fleet.key}` } });
  const want = Buffer.from(await res.arrayBuffer());
  assert.ok(want.length > 20000);
  assert.ok(got.equals(want), `downloaded ${got.length} bytes, stored ${want.length}`);
  assert.match(dl.suggestedFilename(), new RegExp(task.id));

  // One stream only, from the URL.
  await page.goto(`${fleet.url}/tasks/${task.id}?stream=stderr`);
  await until(async () => (await out.innerText()).includes("apple again"), 10000, "stderr shown");
  assert.match(await page.locator(".hout-status").innerText(), /^1 line/);
});

test("a finished task's streams are told apart exactly, even where both wrote the same line", async () => {
  const { page } = b;
  const run = await fleet.api("POST", "/api/v1/runs?wait=true", {
    command: "echo twin; sleep 0.3; echo twin >&2; sleep 0.3; echo twin",
    targets: ["alpha"],
  });
  await page.goto(`${fleet.url}/tasks/${run.tasks[0].id}`);
  await until(async () => (await page.locator(".hout-line").count()) === 3, 10000, "3 lines");
  const kinds = await page.locator(".hout-line").evaluateAll((ls) => ls.map((l) => l.classList.contains("err")));
  assert.deepEqual(kinds, [false, true, false]);
});

test("a large output (200,000 lines) stays bounded in the page and searchable", async () => {
  const { page } = b;
  const run = await runWait("seq 1 200000", "alpha");
  const task = run.tasks[0];
  await page.goto(`${fleet.url}/tasks/${task.id}`);
  await until(async () => /\d+ lines/.test(await page.locator(".hout-status").innerText()), 30000, "loaded");
  const status = await page.locator(".hout-status").innerText();
  const lines = Number(/(\d+) lines/.exec(status)[1]);
  assert.ok(lines >= 200000, status);
  const rendered = await page.locator(".hout-line").count();
  assert.ok(rendered < 200, `${rendered} lines rendered`);
  await page.getByLabel("Search the output").fill("199999");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 1 match", 10000, "1 match");
  await until(async () => (await page.locator(".hout-line mark.cur").count()) === 1, 5000, "the match in view");
  await shot(page, "task-large");
});

test("hostile output is shown literally and runs nothing", async () => {
  const { page, problems } = b;
  const task = runs.hostile.tasks[0];
  await page.goto(`${fleet.url}/tasks/${task.id}`);
  const out = page.getByTestId("task-output");
  await until(async () => (await out.innerText()).includes(hostile), 10000, "hostile text shown");
  assert.equal(await out.locator("img").count(), 0);
  await page.getByLabel("Search the output").fill("onerror");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 1 match", 5000, "1 match");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  // A match far to the right of a long line is scrolled into view sideways.
  await page.getByLabel("Search the output").fill("needle-far");
  await until(async () => (await page.getByTestId("output-matches").innerText()) === "1 of 1 match", 5000, "far match");
  await until(
    async () => {
      const m = await page.locator(".hout-line mark.cur").boundingBox();
      const o = await out.boundingBox();
      return m && o && m.x >= o.x && m.x + m.width <= o.x + o.width;
    },
    5000,
    "the far match in view",
  );
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
});

test("a running task's output follows live, then the task's final state shows", async () => {
  const { page } = b;
  // The task waits for a file the test writes once the page shows its first lines (alpha is
  // the server's own agent, on this machine).
  const go = join(fleet.dir, "go-live");
  const run = await fleet.api("POST", "/api/v1/runs", {
    command: `echo live-start; echo live-err >&2; for i in $(seq 600); do [ -e '${go}' ] && break; sleep 0.1; done; echo live-end`,
    targets: ["alpha"],
  });
  const task = run.tasks[0];
  await page.goto(`${fleet.url}/tasks/${task.id}`);
  const out = page.getByTestId("task-output");
  await until(async () => (await out.innerText()).includes("live-start"), 15000, "live output");
  assert.equal(await page.getByLabel("Follow").isChecked(), true);
  assert.match(await page.locator(".hout-status").innerText(), /live/);
  assert.ok(!(await out.innerText()).includes("live-end"));
  writeFileSync(go, "");
  await until(async () => (await out.innerText()).includes("live-end"), 20000, "the rest of the output");
  await until(async () => /succeeded/.test(await page.getByTestId("task-facts").innerText()), 15000, "final state");
  assert.equal(await page.locator(".hout-line.err", { hasText: "live-err" }).count(), 1);
  assert.equal(await page.getByLabel("Follow").count(), 0);
  assert.equal(await page.getByRole("button", { name: "Cancel task" }).count(), 0);

  // A running task can be cancelled from its page.
  const long = await fleet.api("POST", "/api/v1/runs", { command: "echo waiting; sleep 60", targets: ["beta"] });
  await page.goto(`${fleet.url}/tasks/${long.tasks[0].id}`);
  await until(async () => (await out.innerText()).includes("waiting"), 15000, "the long task's output");
  await page.getByRole("button", { name: "Cancel task" }).click();
  await until(async () => /cancelled/.test(await page.getByTestId("task-facts").innerText()), 20000, "cancelled");
  const t = await fleet.api("GET", `/api/v1/tasks/${long.tasks[0].id}`);
  assert.equal(t.state, "cancelled");
});

test("Settings: an operator key (secret once), a join token with its command, variables and a secret, the policy", async () => {
  const { page } = b;
  await page.getByRole("link", { name: "Settings" }).click();
  await page.waitForURL(/\/settings\/keys$/);

  // API keys.
  await page.getByLabel("Name", { exact: true }).fill("ci-op");
  await page.getByLabel("Role").selectOption("operator");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key-secret").innerText()).trim();
  assert.match(secret, /^hk_/);
  const me = await fleet.api("GET", "/api/v1/me", undefined, secret);
  assert.equal(me.role, "operator");
  assert.equal(me.name, "ci-op");
  await page.locator('[data-key="ci-op"]').waitFor();
  await b.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: fleet.url });
  await page.getByRole("button", { name: "Copy key" }).click();
  await page.getByText("Copied.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  await shot(page, "settings-keys");
  await page.getByRole("button", { name: "Done" }).click();
  assert.ok(!(await page.content()).includes(secret), "the secret is shown once");
  // The same name again: the server's one line.
  await page.getByLabel("Name", { exact: true }).fill("ci-op");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.getByRole("alert").waitFor();
  assert.match(await page.getByRole("alert").innerText(), /ci-op/);
  // Revoke it (with a confirm).
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Revoke key ci-op" }).click();
  await until(async () => /revoked/.test(await page.locator('[data-key="ci-op"]').innerText()), 10000, "revoked");
  const keys = await fleet.api("GET", "/api/v1/keys");
  assert.ok(keys.find((k) => k.name === "ci-op").revoked_at);

  // Join tokens.
  await page.getByRole("link", { name: "Join tokens" }).click();
  await page.waitForURL(/\/settings\/tokens$/);
  await page.getByLabel("Uses (machines)").fill("2");
  await page.getByLabel("Labels its machines may hold").fill("role=web");
  await page.getByRole("button", { name: "Create token" }).click();
  const cmd = await page.getByTestId("join-command").innerText();
  assert.match(cmd, /HERD_JOIN_TOKEN=\S+ .*herd agent/);
  const tokens = await fleet.api("GET", "/api/v1/tokens");
  const t = tokens.find((x) => x.labels && x.labels.role === "web");
  assert.ok(t && t.uses_left === 2, JSON.stringify(tokens));
  await page.locator(`[data-token="${t.id}"]`).waitFor();
  await shot(page, "settings-tokens");

  // Variables and a secret.
  await page.getByRole("link", { name: "Variables & secrets" }).click();
  await page.waitForURL(/\/settings\/vars$/);
  await page.getByLabel("Name", { exact: true }).fill("region");
  await page.getByLabel("Value", { exact: true }).fill("eu-west-1");
  await page.getByRole("button", { name: "Set", exact: true }).click();
  await until(async () => (await page.locator('[data-var="region"]').innerText()).includes("eu-west-1"), 10000, "var");
  await page.getByRole("button", { name: "Edit region" }).click();
  assert.equal(await page.getByLabel("Value", { exact: true }).inputValue(), "eu-west-1");
  await page.getByLabel("Value", { exact: true }).fill("eu-west-2");
  await page.getByRole("button", { name: "Set", exact: true }).click();
  await until(async () => (await page.locator('[data-var="region"]').innerText()).includes("eu-west-2"), 10000, "var edited");
  assert.equal((await fleet.api("GET", "/api/v1/vars/region")).value, "eu-west-2");
  const pw = "s3cr3t-VALUE-9x";
  await page.getByLabel("Name", { exact: true }).fill("db_pw");
  await page.getByLabel(/^secret/).check();
  assert.equal(await page.getByLabel("Secret value").getAttribute("type"), "password");
  await page.getByLabel("Secret value").fill(pw);
  await page.getByRole("button", { name: "Set", exact: true }).click();
  await page.locator('[data-var="db_pw"]').waitFor();
  assert.match(await page.locator('[data-var="db_pw"]').innerText(), /secret/);
  assert.equal(await page.getByLabel("Secret value").inputValue(), "");
  assert.ok(!(await page.content()).includes(pw), "the secret's value is nowhere on the page");
  assert.ok(!(await page.locator("body").innerText()).includes(pw));
  const v = await fleet.api("GET", "/api/v1/vars/db_pw");
  assert.equal(v.secret, true);
  assert.equal(v.value, null);
  await shot(page, "settings-vars");

  // The policy: check a command, store a new version.
  await page.getByRole("link", { name: "Command policy" }).click();
  await page.waitForURL(/\/settings\/policy$/);
  await page.getByLabel("Command").fill("rm -rf /");
  await page.getByRole("button", { name: "Check", exact: true }).click();
  const decision = await page.getByTestId("policy-decision").innerText();
  assert.match(decision, /deny/);
  assert.match(decision, /dangerous|forbidden/);
  const before = Number(await page.getByTestId("policy-version").innerText());
  await page.getByRole("button", { name: "Edit policy" }).click();
  await page.getByRole("button", { name: "Save as a new version" }).click();
  await until(
    async () => Number(await page.getByTestId("policy-version").innerText()) === before + 1,
    10000,
    "a new version",
  );
  await page.getByTestId("policy-history").getByRole("button", { name: "Show" }).first().click();
  await until(async () => page.url().includes("version="), 5000, "the version shown is in the URL");
  await shot(page, "settings-policy");
  // A policy that does not check out: the server's one line.
  await page.getByRole("button", { name: "Edit policy" }).click();
  await page.getByLabel(/^Policy/).fill("default: [");
  await page.getByRole("button", { name: "Save as a new version" }).click();
  await page.getByTestId("policy-current").getByRole("alert").waitFor();
  await page.getByRole("button", { name: "Cancel" }).click();
});

test("Audit shows the runs and the key's creation; a filter is in the URL", async () => {
  const { page } = b;
  await page.getByRole("link", { name: "Audit" }).click();
  await page.waitForURL(/\/audit$/);
  await page.locator('[data-action="key.create"]').first().waitFor();
  const table = page.getByTestId("audit");
  await until(async () => (await table.innerText()).includes(`run:${runs.fail.id}`), 10000, "the failed run");
  assert.ok((await table.innerText()).includes("ci-op"));
  assert.ok((await page.locator('[data-action="run.create"]').count()) >= 5);
  await shot(page, "audit");
  await page.getByLabel("Who (key name)").fill("nobody-here");
  await until(async () => (await page.locator("[data-audit]").count()) === 0, 10000, "no entries");
  assert.ok(page.url().includes("who=nobody-here"), page.url());
  await page.getByRole("button", { name: "Clear filters" }).click();
  await page.locator('[data-action="key.create"]').first().waitFor();
  // An actor's name filters by it.
  await page.locator('[data-action="key.create"]').first().getByRole("button", { name: "key:admin" }).click();
  await until(async () => page.url().includes("who=key%3Aadmin"), 5000, "who in the URL");
  await until(async () => (await page.locator('[data-action="run.create"]').count()) >= 5, 10000, "admin's runs");
});

test("a viewer sees read-only lists: no create, revoke, set or edit", async () => {
  const { page } = b;
  const viewer = await fleet.api("POST", "/api/v1/keys", { name: "watcher", role: "viewer" });
  await page.getByRole("button", { name: "Log out" }).click();
  await login(page, fleet.url, viewer.key);
  await page.goto(fleet.url + "/settings/keys");
  await page.locator('[data-key="watcher"]').waitFor();
  assert.equal(await page.getByRole("button", { name: "Create key" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: /^Revoke/ }).count(), 0);
  await shot(page, "settings-viewer");
  await page.getByRole("link", { name: "Join tokens" }).click();
  await page.getByTestId("tokens").waitFor();
  assert.equal(await page.getByRole("button", { name: "Create token" }).count(), 0);
  await page.getByRole("link", { name: "Variables & secrets" }).click();
  await page.locator('[data-var="region"]').waitFor();
  assert.equal(await page.getByRole("button", { name: "Set", exact: true }).count(), 0);
  assert.equal(await page.getByRole("button", { name: /^Delete/ }).count(), 0);
  await page.getByRole("link", { name: "Command policy" }).click();
  await page.getByTestId("policy-version").waitFor();
  assert.equal(await page.getByRole("button", { name: "Edit policy" }).count(), 0);
  // History still reads.
  await page.goto(fleet.url + "/runs");
  await page.locator(`[data-run="${runs.ok.id}"]`).waitFor();
});

test("an operator sets variables but manages no keys, tokens or policy", async () => {
  const { page } = b;
  const op = await fleet.api("POST", "/api/v1/keys", { name: "oper", role: "operator" });
  await page.getByRole("button", { name: "Log out" }).click();
  await login(page, fleet.url, op.key);
  await page.goto(fleet.url + "/settings/keys");
  await page.locator('[data-key="oper"]').waitFor();
  assert.equal(await page.getByRole("button", { name: "Create key" }).count(), 0);
  await page.getByRole("link", { name: "Join tokens" }).click();
  await page.getByTestId("tokens").waitFor();
  assert.equal(await page.getByRole("button", { name: "Create token" }).count(), 0);
  await page.getByRole("link", { name: "Command policy" }).click();
  await page.getByTestId("policy-version").waitFor();
  assert.equal(await page.getByRole("button", { name: "Edit policy" }).count(), 0);
  await page.getByRole("link", { name: "Variables & secrets" }).click();
  await page.getByLabel("Name", { exact: true }).fill("op_var");
  await page.getByLabel("Value", { exact: true }).fill("from-operator");
  await page.getByRole("button", { name: "Set", exact: true }).click();
  await until(async () => (await page.locator('[data-var="op_var"]').innerText()).includes("from-operator"), 10000, "set");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete op_var" }).click();
  await until(async () => (await page.locator('[data-var="op_var"]').count()) === 0, 10000, "deleted");
  const vars = await fleet.api("GET", "/api/v1/vars");
  assert.ok(!vars.some((v) => v.key === "op_var"));
});
