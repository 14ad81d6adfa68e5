// The Run page and a run's live view: a command on two machines with each one's output in its
// own terminal, live; cancel from the page; an interactive run answered by typing in the
// terminal; hostile output shown as terminal text; a command the policy sends for approval;
// a machine that did not answer named in the summary; a viewer sees no Start and replays a
// run's output from the start.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { startFleet, openBrowser, login, shot, until, sleep } from "./harness.mjs";

let fleet, b;
before(async () => {
  fleet = await startFleet({ agents: ["beta", "gamma"] });
  b = await openBrowser();
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
});

/** The text of a machine's terminal (xterm's DOM rows). */
const termText = (page, machine) =>
  page
    .locator(`[data-testid="term-${machine}"] .xterm-rows`)
    .innerText()
    .catch(() => "");

/** Fills the run form and starts; resolves with the run's id once its page is shown. */
async function startRun(page, { target, command, interactive = false, extra = {} }) {
  await page.goto(`${fleet.url}/run?target=${encodeURIComponent(target)}`);
  await page.getByLabel("Command").fill(command);
  for (const [label, value] of Object.entries(extra)) await page.getByLabel(label).fill(value);
  if (interactive) {
    await until(async () => /^1 match/.test(await page.getByTestId("match-count").innerText()), 10000, "1 match");
    await page.getByLabel("Interactive (stdin + PTY)").check();
  }
  await page.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]+$/, { timeout: 15000 });
  return decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
}

const summaryRow = (page, machine) => page.locator(`[data-testid="summary"] tr[data-machine="${machine}"]`);

test("a command on two machines: each terminal shows its own output live, then the summary", async () => {
  const { page } = b;
  await page.goto(`${fleet.url}/run?target=${encodeURIComponent("alpha,beta")}`);
  await until(async () => /^2 matches/.test(await page.getByTestId("match-count").innerText()), 10000, "2 matches");
  assert.equal(await page.getByLabel("Machines (selector)").inputValue(), "alpha,beta");
  // Interactive needs exactly one machine.
  assert.equal(await page.getByLabel("Interactive (stdin + PTY)").isDisabled(), true);
  await page.getByLabel("Command").fill('echo "hello-$HERD_TASK_ID"; sleep 4; echo "bye-$HERD_TASK_ID"');
  await shot(page, "run-form");
  await page.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]+$/, { timeout: 15000 });
  const id = new URL(page.url()).pathname.split("/").pop();
  const run = await fleet.api("GET", `/api/v1/runs/${id}`);
  const taskOf = Object.fromEntries(run.tasks.map((t) => [t.agent_name, t.id]));
  assert.deepEqual(Object.keys(taskOf).sort(), ["alpha", "beta"]);
  // Live: each greeting shows while the run still runs (the summary is not there yet).
  for (const m of ["alpha", "beta"]) {
    await until(async () => (await termText(page, m)).includes(`hello-${taskOf[m]}`), 15000, `${m}'s greeting`);
  }
  assert.equal(await page.getByTestId("summary").count(), 0, "the run has not ended yet");
  assert.ok(!(await termText(page, "alpha")).includes(taskOf.beta), "alpha's terminal shows only alpha's output");
  assert.ok(!(await termText(page, "beta")).includes(taskOf.alpha), "beta's terminal shows only beta's output");
  assert.ok(await page.getByRole("button", { name: "Cancel" }).isVisible());
  await shot(page, "run-live");
  await page.getByTestId("summary").waitFor({ timeout: 30000 });
  for (const m of ["alpha", "beta"]) {
    assert.ok((await termText(page, m)).includes(`bye-${taskOf[m]}`));
    const row = await summaryRow(page, m).innerText();
    assert.match(row, /succeeded/);
    assert.match(row, /\b0\b/);
  }
  assert.match(await page.getByTestId("progress").innerText(), /2\/2\s+done/);
  assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0);
  assert.equal(await page.getByTestId("not-answered").count(), 0);
  await shot(page, "run-summary");
  const done = await fleet.api("GET", `/api/v1/runs/${id}`);
  assert.equal(done.state, "succeeded");
  // Tabs instead of the grid: one tab per machine with its state; the terminals keep their output.
  await page.getByRole("button", { name: "Tabs" }).click();
  const tabs = page.getByRole("tab");
  // The click re-renders asynchronously: wait for the tabs before looking at them.
  await until(async () => (await tabs.count()) === 2, 10000, "two tabs");
  assert.match(await tabs.nth(0).innerText(), /alpha\s+succeeded/);
  assert.ok(await page.getByTestId("term-alpha").isVisible());
  await page.getByTestId("term-beta").waitFor({ state: "hidden", timeout: 10000 });
  assert.ok(!(await page.getByTestId("term-beta").isVisible()));
  assert.ok((await termText(page, "alpha")).includes(`bye-${taskOf.alpha}`));
  await page.getByRole("tab", { name: /beta/ }).click();
  await page.getByTestId("term-beta").waitFor({ state: "visible" });
  await page.getByTestId("term-alpha").waitFor({ state: "hidden", timeout: 10000 });
  assert.ok(!(await page.getByTestId("term-alpha").isVisible()));
  // A terminal shown again redraws its rows on a later frame.
  await until(async () => (await termText(page, "beta")).includes(`bye-${taskOf.beta}`), 10000, "beta's output redrawn");
  assert.ok(page.url().includes("layout=tabs"));
  await shot(page, "run-tabs");
});

test("cancel a running command from the page", async () => {
  const { page } = b;
  const id = await startRun(page, { target: "alpha", command: "echo started; sleep 600" });
  await until(async () => (await termText(page, "alpha")).includes("started"), 15000, "started");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.getByTestId("summary").waitFor({ timeout: 30000 });
  assert.match(await summaryRow(page, "alpha").innerText(), /cancelled/);
  const run = await fleet.api("GET", `/api/v1/runs/${id}`);
  assert.equal(run.state, "cancelled");
  assert.equal(run.cancel_requested, true);
  assert.equal(run.tasks[0].state, "cancelled");
});

test("an interactive run on one machine is answered by typing in its terminal", async () => {
  const { page } = b;
  const id = await startRun(page, {
    target: "beta",
    command: `read -p 'Name? ' n; echo "hi $n"`,
    interactive: true,
  });
  await until(async () => (await termText(page, "beta")).includes("Name?"), 15000, "the prompt");
  assert.ok(await page.getByRole("button", { name: "EOF" }).isVisible());
  await page.locator('[data-testid="term-beta"] .xterm').click();
  await page.keyboard.type("herd-web");
  await page.keyboard.press("Enter");
  await until(async () => (await termText(page, "beta")).includes("hi herd-web"), 15000, "the answer echoed");
  await shot(page, "run-interactive");
  await page.getByTestId("summary").waitFor({ timeout: 20000 });
  const run = await fleet.api("GET", `/api/v1/runs/${id}`);
  assert.equal(run.spec.interactive, true);
  assert.equal(run.tasks[0].state, "succeeded");
});

test("an interactive task gets the terminal's size, and EOF ends its input", async () => {
  const { page } = b;
  await startRun(page, {
    target: "alpha",
    command: `read -p 'go? ' x; echo "size=$(stty size)"; cat; echo "after-eof"`,
    interactive: true,
  });
  await until(async () => (await termText(page, "alpha")).includes("go?"), 15000, "the prompt");
  await page.locator('[data-testid="term-alpha"] .xterm').click();
  await page.keyboard.press("Enter");
  const size = await until(async () => /size=(\d+) (\d+)/.exec(await termText(page, "alpha")), 15000, "the size");
  const rows = await page.locator('[data-testid="term-alpha"] .xterm-rows > div').count();
  assert.equal(Number(size[1]), rows, `stty size ${size[0]} vs ${rows} rows`);
  assert.notEqual(`${size[1]} ${size[2]}`, "24 100", "the terminal's own size, not the starting one");
  await page.keyboard.type("typed-line");
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "EOF" }).click();
  await until(async () => (await termText(page, "alpha")).includes("after-eof"), 15000, "cat ended by EOF");
  await page.getByTestId("summary").waitFor({ timeout: 20000 });
  assert.match(await summaryRow(page, "alpha").innerText(), /succeeded/);
});

test("HTML and escape sequences in output are terminal text, never HTML", async () => {
  const { page, problems } = b;
  const hostile = `<img src=x onerror="window.__pwned=1">`;
  await startRun(page, {
    target: "alpha",
    command: `printf '%s\\n' '${hostile}'; printf '\\033]0;pwned-title\\007\\033[31mred-text\\033[0m\\n'`,
  });
  await page.getByTestId("summary").waitFor({ timeout: 20000 });
  await until(async () => (await termText(page, "alpha")).includes("red-text"), 10000, "red text");
  const text = await termText(page, "alpha");
  assert.ok(text.includes(hostile), text);
  assert.ok(!text.includes("pwned-title"), "the title sequence is consumed by the terminal");
  assert.equal(await page.locator(".runview img").count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.ok(!(await page.title()).includes("pwned-title"));
  // The colour is the terminal's: red text in a red-foreground span.
  const red = page.locator('[data-testid="term-alpha"] .xterm-rows span', { hasText: "red-text" }).first();
  assert.match((await red.getAttribute("class")) ?? "", /xterm-fg-1\b/);
  // The command itself is shown as text too.
  assert.ok((await page.getByTestId("run-command").innerText()).includes(hostile));
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
});

test("a command the policy sends for approval shows its line and runs once approved", async () => {
  const { page } = b;
  const policy = (caution) => ({
    text: JSON.stringify({
      default: { rules: { safe: "allow", caution, dangerous: "approve", forbidden: "deny" } },
      by_role: { viewer: { rules: { safe: "deny", caution: "deny", dangerous: "deny", forbidden: "deny" } } },
    }),
  });
  await fleet.api("PUT", "/api/v1/policy", policy("approve"));
  try {
    await page.goto(`${fleet.url}/run?target=alpha`);
    await page.getByLabel("Command").fill("rm -f /tmp/herd-web-approval-test-none");
    await page.getByRole("button", { name: "Start" }).click();
    const alert = page.locator("form [role=alert]");
    await alert.waitFor();
    assert.match(await alert.innerText(), /needs approval/);
    assert.ok(page.url().endsWith("/run?target=alpha"));
    await shot(page, "run-approval");
    await page.getByRole("button", { name: "Approve and run" }).click();
    await page.waitForURL(/\/runs\/[0-9a-f]+$/, { timeout: 15000 });
    await page.getByTestId("summary").waitFor({ timeout: 20000 });
    assert.match(await summaryRow(page, "alpha").innerText(), /succeeded/);
  } finally {
    await fleet.api("PUT", "/api/v1/policy", policy("allow"));
  }
});

test("the summary names a machine that did not answer", async () => {
  const { page } = b;
  // Stop gamma's agent (this test's own process, found by its state dir) and wait until the
  // server has it offline.
  const pids = execFileSync("pgrep", ["-f", "--", `--state-dir ${join(fleet.dir, "gamma")}`], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map(Number);
  assert.equal(pids.length, 1, `one gamma agent: ${pids}`);
  process.kill(pids[0], "SIGKILL");
  await until(async () => (await fleet.api("GET", "/api/v1/agents/gamma")).online === false, 60000, "gamma offline");
  const id = await startRun(page, {
    target: "alpha,gamma",
    command: "echo present",
    extra: { "Wait for offline machines": "0" },
  });
  await page.getByTestId("summary").waitFor({ timeout: 30000 });
  const missing = await page.getByTestId("not-answered").innerText();
  assert.match(missing, /gamma/);
  assert.doesNotMatch(missing, /alpha/);
  assert.match(await summaryRow(page, "gamma").innerText(), /lost/);
  assert.match(await summaryRow(page, "alpha").innerText(), /succeeded/);
  const run = await fleet.api("GET", `/api/v1/runs/${id}`);
  assert.equal(run.tasks.find((t) => t.agent_name === "gamma").state, "lost");
  await shot(page, "run-missing");
});

test("a flood of output is bounded: the middle is skipped, the end is shown, the page answers", async () => {
  const { page } = b;
  // ~40 MB of 120-column lines, then a last line to look for.
  await startRun(page, {
    target: "alpha",
    command: `yes "$(head -c 120 /dev/zero | tr '\\0' y)" | head -n 330000; echo END-OF-FLOOD`,
  });
  await page.getByTestId("summary").waitFor({ timeout: 120000 });
  await until(async () => (await termText(page, "alpha")).includes("END-OF-FLOOD"), 60000, "the last line shown");
  assert.match(await page.getByTestId("skipped").innerText(), /MiB skipped/);
  // The page still answers: a link is followed at once.
  await page.getByRole("link", { name: "full output" }).waitFor();
  assert.equal(await page.evaluate(() => 1 + 1), 2);
});

test("a viewer key sees no Start, and a run's page replays its output from the start", async () => {
  const created = await fleet.api("POST", "/api/v1/keys", { name: "web-run-viewer", role: "viewer" });
  // A run made through the API, to replay.
  const r = await fleet.api("POST", "/api/v1/runs?wait=true", { command: "echo replay-me; echo line-two", targets: ["beta"] });
  const context = await b.browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    await login(page, fleet.url, created.key);
    await page.goto(`${fleet.url}/run?target=alpha`);
    await page.getByTestId("viewer-note").waitFor();
    assert.equal(await page.getByRole("button", { name: "Start" }).count(), 0);
    await shot(page, "run-viewer");
    await page.goto(`${fleet.url}/runs/${r.id}`);
    await until(async () => (await termText(page, "beta")).includes("line-two"), 15000, "replayed output");
    assert.ok((await termText(page, "beta")).includes("replay-me"));
    await page.getByTestId("summary").waitFor();
    assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0);
  } finally {
    await context.close();
  }
  await sleep(0);
});
