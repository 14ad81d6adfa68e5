// The Ask page against a real herd whose model is a scripted chat-completions server of this
// test (tests/ask-model.mjs): a plan shown with herd's own risk badges, a step edited and
// checked again, steps approved, rejected (the steps after it skipped) and a denied step
// kept from running; the plan's run followed live, a prompt answered inline, an alternative
// approved, the summary and the model log shown; hostile model text shown as text; a viewer
// cannot run; without a model, the server's one line.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { startFleet, openBrowser, login, shot, until } from "./harness.mjs";
import { startModel } from "./ask-model.mjs";

const HOSTILE = `<img src=x onerror="window.__pwned=1">`;
const scratch = `/tmp/herd-ask-web-${process.pid}-${Date.now()}`;

let fleet, b, model;
before(async () => {
  model = await startModel();
  fleet = await startFleet({ env: { HERD_LLM_URL: model.url, HERD_LLM_MODEL: "test" } });
  b = await openBrowser();
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
  await model?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const step = (page, id) => page.locator(`li[data-step="${id}"]`);

/** Asks for a plan on the Ask page. */
async function ask(page, request, selector = "alpha") {
  await page.goto(fleet.url + "/ask");
  await page.getByLabel("Request").fill(request);
  await page.getByLabel("Machines (selector)").fill(selector);
  await until(async () => /^1 match/.test(await page.getByTestId("match-count").innerText()), 10000, "1 match");
  await page.getByRole("button", { name: "Plan", exact: true }).click();
  await page.getByTestId("plan").waitFor();
}

async function risk(page, id) {
  const r = step(page, id).getByTestId("risk");
  return [await r.getAttribute("data-class"), await r.getAttribute("data-decision")];
}

/** The plan's run the page shows, from the API. */
async function shownRun(page) {
  const id = await until(() => /\/ask\/([^/?]+)$/.exec(new URL(page.url()).pathname)?.[1], 15000, "the run's page");
  return id;
}

test("plan, edit, approve and run: risk from herd's policy, a prompt answered inline, the summary and the model log", async () => {
  const { page, problems } = b;
  model.plan({
    summary: `Tidy the scratch space ${HOSTILE}`,
    steps: [
      { id: "look", description: `Say hello ${HOSTILE}`, command: `echo '${HOSTILE}'`, expected: "prints the line", depends_on: [], targets: [] },
      { id: "clean", description: "Remove an old config dir", command: "rm -rf /etc/herd-ask-x", expected: "gone", depends_on: ["look"], targets: [] },
      { id: "confirm", description: "Ask before going on", command: "read -p 'Continue? ' a; echo got-$a", expected: "prints got-yes", depends_on: ["clean"], targets: [] },
    ],
  });
  await ask(page, "tidy the scratch space");
  // herd's own classification, whatever the model says.
  assert.deepEqual(await risk(page, "look"), ["safe", "allow"]);
  assert.deepEqual(await risk(page, "clean"), ["dangerous", "approve"]);
  assert.match(await step(page, "clean").innerText(), /needs approval/);
  assert.match(await step(page, "clean").innerText(), /removes system path/);
  assert.match(await step(page, "clean").innerText(), /after: look/);
  // Model text is text.
  assert.ok((await page.getByTestId("plan-summary").innerText()).includes(HOSTILE));
  assert.ok((await step(page, "look").innerText()).includes(`Say hello ${HOSTILE}`));
  assert.equal(await page.locator(".ask-plan img").count(), 0);
  await shot(page, "ask-plan");

  // Edit: the new command is checked by the policy again and its badge follows.
  await page.getByRole("button", { name: "Edit step look" }).click();
  await page.getByLabel("New command of step look").fill(`mkdir -p ${scratch} && echo '${HOSTILE}'`);
  await page.getByRole("button", { name: "Check and save" }).click();
  await until(async () => (await risk(page, "look"))[0] === "caution", 10000, "the edited step re-checked");
  assert.ok((await step(page, "look").getByTestId("command").innerText()).startsWith(`mkdir -p ${scratch}`));
  assert.match(await step(page, "look").innerText(), /edited; the model wrote/);

  // Nothing runs until every step is reviewed.
  const runButton = page.getByRole("button", { name: /^Run plan/ });
  assert.ok(await runButton.isDisabled());
  assert.match(await page.getByTestId("run-why").innerText(), /3 steps to review/);
  for (const id of ["look", "clean", "confirm"]) await page.getByRole("button", { name: `Approve step ${id}` }).click();
  assert.ok(await runButton.isEnabled());
  await shot(page, "ask-plan-reviewed");
  await runButton.click();
  const id = await shownRun(page);

  // The run, live: the prompt of the last step answered inline.
  await page.getByTestId("request").waitFor();
  const prompt = page.getByTestId("prompt");
  await prompt.waitFor({ timeout: 45000 });
  assert.match(await step(page, "confirm").getByTestId("supervision").innerText(), /waiting for input/);
  assert.equal(await step(page, "confirm").getByTestId("step-state").innerText(), "running");
  assert.equal(await step(page, "look").getByTestId("step-state").innerText(), "succeeded");
  await prompt.scrollIntoViewIfNeeded();
  await shot(page, "ask-running");
  await prompt.locator("input").fill("yes");
  await prompt.getByRole("button", { name: "Send answer" }).click();

  // Every step succeeded, the summary is shown, the edited command ran.
  const summary = page.getByTestId("summary");
  await summary.waitFor({ timeout: 45000 });
  assert.match(await summary.innerText(), /3 of 3 steps succeeded/);
  for (const s of ["look", "clean", "confirm"]) {
    assert.equal(await step(page, s).getByTestId("step-state").innerText(), "succeeded", s);
  }
  await until(async () => (await step(page, "confirm").getByTestId("output").innerText()).includes("got-yes"), 15000, "the answer's effect");
  await until(async () => (await step(page, "look").getByTestId("output").innerText()).includes(HOSTILE), 15000, "hostile output as text");
  assert.ok(existsSync(scratch), "the edited command ran");
  // The answer is never shown again.
  assert.equal(await page.getByTestId("prompt").count(), 0);
  assert.ok(!(await page.locator("main").innerText()).includes("got-yes\nyes"));
  const link = step(page, "look").locator('a[href^="/tasks/"]').first();
  assert.equal(await link.innerText(), "alpha");
  assert.equal(await step(page, "look").locator('a[href^="/runs/"]').count(), 1);
  assert.equal(await page.locator(`a[href="/workflow-runs/${id}"]`).count(), 1);
  await shot(page, "ask-summary");

  // The API agrees: the gated step went with a person's approval; the edited command ran.
  const view = await fleet.api("GET", `/api/v1/ask/runs/${id}`);
  assert.equal(view.run.state, "succeeded");
  const of = (s) => view.attempts.find((a) => a.step === s);
  assert.equal(of("clean").approval, "approved");
  assert.equal(of("look").approval, "allowed");
  assert.ok(of("look").command.startsWith("mkdir -p"));

  // The model log, as text.
  await page.getByRole("link", { name: "Model log" }).click();
  await page.locator('[data-kind="plan"]').waitFor();
  assert.ok((await page.locator('[data-kind="plan"]').getByTestId("answer").innerText()).includes("window.__pwned=1"));
  assert.ok((await page.locator('[data-kind="validation"]').count()) >= 3);
  await shot(page, "ask-log");

  // The plan's workflow run leads back to the plan.
  await page.goto(`${fleet.url}/workflow-runs/${id}`);
  await page.getByRole("link", { name: /a herd ask plan/ }).click();
  await page.waitForURL(new RegExp(`/ask/${id}$`));
  await page.getByTestId("request").waitFor();

  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
});

test("a rejected step skips the steps after it, a denied step cannot run, an alternative waits for approval", async () => {
  const { page } = b;
  model.plan({
    summary: "Fix the service",
    steps: [
      { id: "first", description: "Look", command: "echo first", expected: "", depends_on: [], targets: [] },
      { id: "wipe", description: "Wipe everything", command: "rm -rf /", expected: "", depends_on: ["first"], targets: [] },
      { id: "after", description: "After the wipe", command: "echo after", expected: "", depends_on: ["wipe"], targets: [] },
      { id: "fix", description: "Fix it", command: "exit 3", expected: "exit 0", depends_on: ["first"], targets: [] },
    ],
  });
  model.alternative({ command: "rm -rf /etc/herd-ask-alt", description: `Remove the broken config ${HOSTILE}` });
  await ask(page, "fix the service");
  assert.deepEqual(await risk(page, "wipe"), ["forbidden", "deny"]);
  assert.ok(await page.getByRole("button", { name: "Approve step wipe" }).isDisabled());
  await page.getByRole("button", { name: /Approve the 3 steps the policy allows/ }).click();
  const runButton = page.getByRole("button", { name: /^Run plan/ });
  assert.ok(await runButton.isDisabled());
  assert.match(await page.getByTestId("run-why").innerText(), /wipe is denied/);

  await page.getByRole("button", { name: "Reject step wipe" }).click();
  assert.equal(await step(page, "wipe").getAttribute("data-state"), "rejected");
  assert.equal(await step(page, "after").getAttribute("data-state"), "skipped");
  assert.match(await step(page, "after").innerText(), /it needs step wipe/);
  assert.equal(await runButton.innerText(), "Run plan (2 steps)");
  await shot(page, "ask-plan-rejected");
  await runButton.click();
  const id = await shownRun(page);

  // The failed step's alternative needs a person: approved here, it runs.
  const awaiting = page.getByTestId("awaiting");
  await awaiting.waitFor({ timeout: 45000 });
  assert.ok((await awaiting.innerText()).includes(`Remove the broken config ${HOSTILE}`));
  assert.match(await awaiting.innerText(), /dangerous/);
  await shot(page, "ask-awaiting");
  await awaiting.getByRole("button", { name: "Approve" }).click();
  await page.getByTestId("summary").waitFor({ timeout: 45000 });
  assert.equal(await step(page, "fix").getByTestId("step-state").innerText(), "succeeded");
  assert.equal(await step(page, "fix").locator('tr[data-origin="alternative"]').count(), 1);
  assert.match(await page.getByTestId("summary").innerText(), /with the alternative `rm -rf \/etc\/herd-ask-alt`/);
  assert.equal(await step(page, "wipe").count(), 0, "a rejected step is not in the run");

  const view = await fleet.api("GET", `/api/v1/ask/runs/${id}`);
  assert.deepEqual(view.run.steps.map((s) => s.id).sort(), ["first", "fix"]);
  const alt = view.attempts.find((a) => a.origin === "alternative");
  assert.equal(alt.approval, "approved");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
});

test("a secret prompt is answered in a password field and the answer is shown nowhere", async () => {
  const { page } = b;
  const secret = `s3cret-${process.pid}`;
  model.plan({
    summary: "Log in",
    steps: [
      {
        id: "login",
        description: "Read a password",
        command: `printf 'Password: '; read -r p; echo "\${#p} characters"`,
        expected: "",
        depends_on: [],
        targets: [],
      },
    ],
  });
  await ask(page, "log in");
  await page.getByRole("button", { name: "Approve step login" }).click();
  await page.getByRole("button", { name: /^Run plan/ }).click();
  const prompt = page.getByTestId("prompt");
  await prompt.waitFor({ timeout: 45000 });
  assert.match(await prompt.innerText(), /Password:/);
  const field = prompt.locator("input");
  assert.equal(await field.getAttribute("type"), "password");
  await field.fill(secret);
  await prompt.getByRole("button", { name: "Send answer" }).click();
  await page.getByTestId("summary").waitFor({ timeout: 45000 });
  await until(
    async () => (await step(page, "login").getByTestId("output").innerText()).includes(`${secret.length} characters`),
    15000,
    "the answer's length printed",
  );
  assert.ok(!(await page.content()).includes(secret), "the answer is on the page");
});

test("a viewer sees the plan but cannot run it", async () => {
  const viewer = await fleet.api("POST", "/api/v1/keys", { name: "ask-viewer", role: "viewer" });
  const ctx = await b.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  try {
    await login(page, fleet.url, viewer.key);
    // The plans' runs so far are listed; one opens read-only.
    await page.goto(fleet.url + "/ask");
    const recent = page.getByRole("region", { name: "Recent plans' runs" });
    await until(async () => (await recent.locator('a[href^="/ask/"]').count()) >= 1, 15000, "recent runs listed");
    await recent.locator('a[href^="/ask/"]').last().click();
    await page.getByTestId("summary").waitFor();
    assert.equal(await page.getByRole("button", { name: "Cancel run" }).count(), 0);
    model.plan({
      summary: "Look",
      steps: [{ id: "look", description: "Look", command: "uptime", expected: "", depends_on: [], targets: [] }],
    });
    await ask(page, "look around");
    assert.match(await page.getByTestId("plan").innerText(), /viewer's: it can see plans but not run them/);
    assert.equal(await page.getByRole("button", { name: /^Run plan/ }).count(), 0);
    assert.equal(await page.getByRole("button", { name: "Approve step look" }).count(), 0);
  } finally {
    await ctx.close();
  }
});

test("without a model the server's one line is shown", async () => {
  const bare = await startFleet({ agents: [] });
  const ctx = await b.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  try {
    await login(page, bare.url, bare.key);
    await page.goto(bare.url + "/ask");
    await page.getByLabel("Request").fill("do anything");
    await page.getByRole("button", { name: "Plan", exact: true }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /no model is configured on the server/);
    assert.equal((await alert.innerText()).split("\n").length, 1);
    await shot(page, "ask-no-model");
  } finally {
    await ctx.close();
    await bare.stop();
  }
});
