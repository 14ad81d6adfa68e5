// Schedules and LangFlow flows: a schedule added from the form fires (its fires link to their
// runs, and the API agrees), is edited in place (the same schedule, its fire history kept,
// later fires running the new command), pauses (and then fires no more), and is deleted; a bad cron expression shows the API's one line; hostile text shows as text.
// Flows: a source that cannot be reached is refused with one line; with a real LangFlow
// (HERD_LANGFLOW, or the one scripts/test.sh installs) a source is added, synced, and a flow
// runs with input and tweaks from its page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { startFleet, openBrowser, login, shot, until, sleep } from "./harness.mjs";

const HOSTILE = `<img src=x onerror="window.__pwned=1">`;

let fleet, b, langflow;
before(async () => {
  fleet = await startFleet();
  b = await openBrowser();
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
  langflow?.stop();
});

const fires = (name) => fleet.api("GET", `/api/v1/schedules/${name}/fires?limit=1000`);

test("a schedule added from the form fires, links its runs, is edited keeping its fires, pauses, and is deleted", async () => {
  const { page } = b;
  await page.goto(fleet.url + "/schedules");
  await page.getByRole("link", { name: "New schedule" }).click();
  const form = page.getByRole("form", { name: "New schedule" });
  await form.waitFor();
  await form.getByLabel("Name").fill("tick");
  await form.getByRole("radio", { name: "Every" }).check();
  await form.getByLabel("Interval").fill("1s");
  await form.getByRole("radio", { name: "Command" }).check();
  await form.getByRole("textbox", { name: "Command" }).fill("echo tick");
  await form.getByLabel("On machines (selector)").fill("alpha");
  await until(async () => /^1 match/.test(await form.getByTestId("match-count").innerText()), 10000, "1 match");
  await shot(page, "schedule-form");
  await form.getByRole("button", { name: "Add schedule" }).click();
  // The new schedule's page, then the list with its next fire.
  await page.waitForURL(/\/schedules\/tick$/);
  await page.getByTestId("definition").waitFor();
  await page.getByRole("link", { name: "Schedules", exact: true }).first().click();
  const row = page.locator('[data-schedule="tick"]');
  await row.waitFor();
  assert.match(await row.innerText(), /every 1s/);
  assert.match(await row.innerText(), /echo tick/);
  assert.equal(await row.getByTestId("state").innerText(), "active");
  await until(async () => /\d{2}:\d{2}:\d{2}/.test(await row.getByTestId("next-fire").innerText()), 10000, "a next fire");
  await until(async () => /run /.test(await row.getByTestId("last-fire").innerText()), 20000, "a last fire with a run");
  await shot(page, "schedules");

  // Its page: the next 10 fires and the fire history, each fire linking to its run.
  await row.getByRole("link", { name: "tick", exact: true }).click();
  await page.waitForURL(/\/schedules\/tick$/);
  await until(async () => (await page.getByTestId("next-fires").locator("tbody tr").count()) === 10, 10000, "10 next fires");
  const link = page.getByTestId("fires").locator('tbody tr a[href^="/runs/"]').first();
  await link.waitFor({ timeout: 20000 });
  const runHref = await link.getAttribute("href");
  const api = await fires("tick");
  const started = api.filter((f) => f.outcome === "started" && f.run_id);
  assert.ok(started.length >= 1, JSON.stringify(api));
  assert.ok(started.some((f) => runHref === `/runs/${f.run_id}`), `${runHref} not among ${JSON.stringify(started)}`);
  const run = await fleet.api("GET", `/api/v1/runs/${started[0].run_id}`);
  assert.equal(run.command, "echo tick");
  await until(async () => (await page.getByTestId("fires").innerText()).includes("succeeded"), 20000, "a fire succeeded");
  await shot(page, "schedule-detail");

  // Edit in place: a new command; the same schedule, its fires kept, later fires run it.
  const was = await fleet.api("GET", "/api/v1/schedules/tick");
  const firedBefore = (await fires("tick")).map((f) => f.fire_at);
  await page.goto(fleet.url + "/schedules/tick?edit=1");
  const edit = page.getByRole("form", { name: "Edit schedule" });
  await edit.waitFor();
  await edit.getByTestId("edit-note").waitFor();
  assert.match(await edit.getByTestId("edit-note").innerText(), /fire history stays/);
  assert.equal(await edit.getByLabel("Interval").inputValue(), "1s");
  await edit.getByRole("textbox", { name: "Command" }).fill("echo tock");
  await shot(page, "schedule-edit");
  await edit.getByRole("button", { name: "Save", exact: true }).click();
  await until(async () => (await fleet.api("GET", "/api/v1/schedules/tick")).target.command === "echo tock", 10000, "edited");
  const edited = await fleet.api("GET", "/api/v1/schedules/tick");
  assert.equal(edited.id, was.id, "the same schedule");
  assert.equal(edited.when, "every 1s");
  await until(async () => (await page.getByTestId("definition").innerText()).includes("echo tock"), 10000, "edit shown");
  const kept = new Set((await fires("tick")).map((f) => f.fire_at));
  for (const t of firedBefore) assert.ok(kept.has(t), `fire at ${t} lost by the edit`);
  assert.ok(await page.locator(`a[href="${runHref}"]`).count(), "the earlier fire's run still listed on the page");
  await until(
    async () => {
      for (const f of (await fires("tick")).filter((f) => f.outcome === "started" && f.run_id)) {
        if ((await fleet.api("GET", `/api/v1/runs/${f.run_id}`)).command === "echo tock") return true;
      }
      return false;
    },
    20000,
    "a fire of the new command",
  );

  // Pause: the state says so, the API agrees, and no fire comes while paused.
  await page.getByRole("button", { name: "Pause tick" }).click();
  await page.getByRole("button", { name: "Resume tick" }).waitFor();
  await until(async () => (await page.locator(".sched-head .badge").innerText()) === "paused", 10000, "paused badge");
  assert.equal((await fleet.api("GET", "/api/v1/schedules/tick")).paused, true);
  await sleep(1500); // a fire handled as the pause landed settles
  const before = (await fires("tick")).length;
  await sleep(3500);
  const afterPause = (await fires("tick")).length;
  assert.equal(afterPause, before, "no fire while paused");
  await page.goto(fleet.url + "/schedules");
  assert.equal(await page.locator('[data-schedule="tick"]').getByTestId("state").innerText(), "paused");

  // Delete, with a confirmation.
  await page.getByRole("button", { name: "Delete tick" }).click();
  await page.getByRole("button", { name: "Yes, delete" }).click();
  await until(async () => (await page.locator('[data-schedule="tick"]').count()) === 0, 10000, "row gone");
  await assert.rejects(fleet.api("GET", "/api/v1/schedules/tick"), /404/);
});

test("a one-time schedule fires a job with parameters; its fire links to the job's run", async () => {
  const { page } = b;
  await fleet.api("POST", "/api/v1/jobs", {
    source: "name: greet\nparams:\n  who: {type: string, default: world}\nrun: echo hello ${{ params.who }}\n",
  });
  await page.goto(fleet.url + "/schedules?new=1");
  const form = page.getByRole("form", { name: "New schedule" });
  await form.getByLabel("Name").fill("greet-once");
  await form.getByRole("radio", { name: "Once at" }).check();
  await form.getByLabel("Time", { exact: true }).fill("+2s");
  await form.getByRole("radio", { name: "Job" }).check();
  await form.getByLabel("Job to run").selectOption("greet");
  await until(async () => /who \(string, default "world"\)/.test(await form.getByTestId("declared-params").innerText()), 5000, "declared params");
  await form.getByLabel("Parameters (NAME=VALUE, one a line)").fill("who=ops");
  await form.getByLabel(/selector/).fill("beta");
  await form.getByRole("button", { name: "Add schedule" }).click();
  await page.waitForURL(/\/schedules\/greet-once$/);
  const s = await fleet.api("GET", "/api/v1/schedules/greet-once");
  assert.equal(s.target.kind, "job");
  assert.deepEqual(s.target.params, { who: "ops" });
  assert.deepEqual(s.target.targets, ["beta"]);
  const link = page.getByTestId("fires").locator('a[href^="/workflow-runs/"]');
  await link.waitFor({ timeout: 20000 });
  const [fire] = await fires("greet-once");
  assert.equal(fire.run_kind, "workflow");
  assert.equal(await link.getAttribute("href"), `/workflow-runs/${fire.run_id}`);
  await until(async () => /never fires again/.test(await page.getByTestId("next-fires").innerText()), 10000, "no next fire");
  await fleet.api("DELETE", "/api/v1/schedules/greet-once");
});

test("a bad cron expression shows the API's one-line error", async () => {
  const { page } = b;
  await page.goto(fleet.url + "/schedules?new=1");
  const form = page.getByRole("form", { name: "New schedule" });
  await form.getByLabel("Name").fill("badcron");
  await form.getByRole("radio", { name: "Cron" }).check();
  await form.getByLabel("Cron expression").fill("61 * * * *");
  await form.getByRole("textbox", { name: "Command" }).fill("uptime");
  await form.getByRole("button", { name: "Add schedule" }).click();
  const alert = form.getByRole("alert");
  await alert.waitFor();
  const text = await alert.innerText();
  assert.match(text, /minute 61 is out of range 0-59/);
  assert.ok(!text.includes("\n"), text);
  assert.equal((await fleet.api("GET", "/api/v1/schedules")).length, 0);
  // A zone that does not exist: its one line too.
  await form.getByLabel("Cron expression").fill("0 30 2 * * *");
  await form.getByLabel("Time zone").fill("Mars/Olympus");
  await form.getByRole("button", { name: "Add schedule" }).click();
  await until(async () => /unknown time zone "Mars\/Olympus"/.test(await alert.innerText()), 10000, "zone error");
});

test("hostile names and commands show as text; an edit saves in place or is refused whole", async () => {
  const { page, problems } = b;
  await page.goto(fleet.url + "/schedules?new=1");
  const form = page.getByRole("form", { name: "New schedule" });
  // A name refuses it: the API's line shows it literally.
  await form.getByLabel("Name").fill(HOSTILE);
  await form.getByLabel("Interval").fill("5m");
  await form.getByRole("textbox", { name: "Command" }).fill(`echo '${HOSTILE}'`);
  await form.getByRole("button", { name: "Add schedule" }).click();
  await until(
    async () => /"<img src=x onerror=\\"window.__pwned=1\\">" is not a schedule name/.test(await form.getByRole("alert").innerText()),
    10000,
    "name refused, shown literally",
  );
  // The command takes it.
  await form.getByLabel("Name").fill("hostile");
  await form.getByRole("button", { name: "Add schedule" }).click();
  await page.waitForURL(/\/schedules\/hostile$/);
  await until(async () => (await page.getByTestId("definition").innerText()).includes(`echo '${HOSTILE}'`), 10000, "command shown");
  await page.goto(fleet.url + "/schedules");
  const row = page.locator('[data-schedule="hostile"]');
  assert.ok((await row.innerText()).includes(`echo '${HOSTILE}'`));
  assert.equal(await page.locator("img").count(), 0);

  // Edit: prefilled, the name kept, saves a new interval in place.
  const id = (await fleet.api("GET", "/api/v1/schedules/hostile")).id;
  await row.getByRole("link", { name: "Edit hostile" }).click();
  const edit = page.getByRole("form", { name: "Edit schedule" });
  await edit.waitFor();
  await edit.getByTestId("edit-note").waitFor();
  assert.equal(await edit.getByLabel("Name").getAttribute("readonly"), "");
  assert.equal(await edit.getByLabel("Interval").inputValue(), "5m");
  assert.equal(await edit.getByRole("textbox", { name: "Command" }).inputValue(), `echo '${HOSTILE}'`);
  await edit.getByLabel("Interval").fill("7m");
  await edit.getByRole("button", { name: "Save", exact: true }).click();
  await until(async () => (await fleet.api("GET", "/api/v1/schedules/hostile")).when === "every 7m", 10000, "edited");
  await until(async () => (await page.getByTestId("definition").innerText()).includes("every 7m"), 10000, "edit shown");
  assert.equal((await fleet.api("GET", "/api/v1/schedules/hostile")).id, id, "edited in place");
  // A refused edit changes nothing and shows the API's line.
  await page.goto(fleet.url + "/schedules/hostile?edit=1");
  await page.getByRole("form", { name: "Edit schedule" }).getByLabel("Interval").fill("1ms");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await until(
    async () => /1ms/.test(await page.getByRole("form", { name: "Edit schedule" }).getByRole("alert").innerText()),
    10000,
    "refused edit",
  );
  const kept = await fleet.api("GET", "/api/v1/schedules/hostile");
  assert.equal(kept.when, "every 7m");
  assert.equal(kept.id, id);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(
    problems.filter((p) => !/Failed to load resource/.test(p)),
    [],
  );
  await fleet.api("DELETE", "/api/v1/schedules/hostile");
});

test("a viewer sees schedules and flows without the actions it cannot take", async () => {
  await fleet.api("POST", "/api/v1/schedules", {
    name: "seen",
    every: "1h",
    paused: true,
    target: { kind: "command", command: "uptime", targets: ["alpha"] },
  });
  const { key } = await fleet.api("POST", "/api/v1/keys", { name: "watcher", role: "viewer" });
  const page = await b.context.newPage();
  try {
    await login(page, fleet.url, key);
    await page.goto(fleet.url + "/schedules?new=1");
    await page.locator('[data-schedule="seen"]').waitFor();
    assert.equal(await page.getByRole("form", { name: "New schedule" }).count(), 0);
    assert.equal(await page.getByRole("link", { name: "New schedule" }).count(), 0);
    assert.equal(await page.getByRole("button", { name: /Resume seen|Pause seen|Delete seen/ }).count(), 0);
    await page.getByRole("link", { name: "seen", exact: true }).click();
    await page.getByTestId("definition").waitFor();
    assert.equal(await page.getByRole("button", { name: "Resume seen" }).count(), 0);
    await page.goto(fleet.url + "/flows");
    await page.getByRole("heading", { name: "Sources" }).waitFor();
    assert.equal(await page.getByRole("form", { name: "Add a LangFlow source" }).count(), 0);
  } finally {
    await page.close();
    await fleet.api("DELETE", "/api/v1/schedules/seen");
  }
});

test("flows: a LangFlow source that cannot be reached is refused with one line", async () => {
  const { page } = b;
  await page.goto(fleet.url + "/flows");
  const form = page.getByRole("form", { name: "Add a LangFlow source" });
  await form.getByLabel("Name").fill("down");
  await form.getByLabel("URL").fill(`http://127.0.0.1:${await freePort()}`);
  await form.getByLabel("API key").fill("sk-not-a-key");
  await form.getByRole("button", { name: "Add source" }).click();
  const alert = form.getByRole("alert");
  await alert.waitFor();
  const text = await alert.innerText();
  assert.match(text, /^source down: cannot reach LangFlow/);
  assert.ok(!text.includes("\n"), text);
  assert.deepEqual(await fleet.api("GET", "/api/v1/langflow/sources"), []);
  await page.getByText("No LangFlow source yet.").waitFor();
});

test("flows: add a real LangFlow, sync it, see its flows, run one with input and tweaks", async (t) => {
  const program = langflowProgram();
  if (!program) {
    t.skip("no LangFlow: set HERD_LANGFLOW to a `langflow` program (scripts/test.sh installs one)");
    return;
  }
  langflow = await startLangflow(program);
  const { page, problems } = b;
  await page.goto(fleet.url + "/flows");
  const form = page.getByRole("form", { name: "Add a LangFlow source" });
  // A wrong key: LangFlow's refusal in one line.
  await form.getByLabel("Name").fill("lab");
  await form.getByLabel("URL").fill(langflow.url);
  await form.getByLabel("API key").fill("sk-wrong");
  await form.getByRole("button", { name: "Add source" }).click();
  await until(async () => /^source lab: the API key was refused/.test(await form.getByRole("alert").innerText()), 20000, "key refused");
  // The right key: added, its flow found; the key leaves the form and is never shown.
  await form.getByLabel("API key").fill(langflow.key);
  await form.getByRole("button", { name: "Add source" }).click();
  await until(async () => /source lab added: 1 flow found/.test(await form.getByRole("status").innerText()), 20000, "source added");
  assert.equal(await form.getByLabel("API key").inputValue(), "");
  const row = page.locator('[data-source="lab"]');
  await row.waitFor();
  await page.locator('[data-flows-of="lab"] [data-flow="echo"]').waitFor();
  assert.ok(!(await page.content()).includes(langflow.key), "the key is shown");
  const sources = await fleet.api("GET", "/api/v1/langflow/sources");
  assert.ok(!JSON.stringify(sources).includes(langflow.key));

  // A flow added upstream: Sync says what it found and lists it.
  await langflow.createFlow("echo2", "echo2");
  await row.getByRole("button", { name: "Sync lab" }).click();
  await until(
    async () => /added 1, updated 0, removed 0, unchanged 1/.test(await row.getByTestId("sync-report").innerText()),
    20000,
    "sync report",
  );
  await page.locator('[data-flows-of="lab"] [data-flow="echo2"]').waitFor();
  await shot(page, "flows");

  // The flow's page: its components, and a run with input and tweaks.
  await page.locator('[data-flows-of="lab"] [data-flow="echo"]').getByRole("link", { name: "echo" }).click();
  await page.waitForURL(/\/flows\/lab\/[0-9a-f-]+$/);
  await page.getByTestId("flow-details").waitFor();
  await page.getByText("ChatOutput-herd2").first().waitFor();
  const run = page.getByRole("form", { name: "Run the flow" });
  const input = `hello ${HOSTILE}`;
  await run.getByLabel("Input text").fill(input);
  await run.getByLabel("Tweaks (a JSON object)").fill("{bad");
  await run.getByRole("button", { name: "Run flow" }).click();
  await until(async () => /^tweaks are not JSON/.test(await run.getByRole("alert").innerText()), 5000, "tweaks refused");
  assert.ok(!(await run.getByRole("alert").innerText()).includes("\n"));
  await run.getByLabel("Tweaks (a JSON object)").fill('{"ChatOutput": {"sender_name": "ops"}}');
  await run.getByRole("button", { name: "Run flow" }).click();
  const answer = page.getByTestId("flow-answer");
  await answer.waitFor({ timeout: 120000 });
  assert.equal(await answer.innerText(), input);
  const result = page.getByTestId("flow-result");
  assert.equal(await result.locator(".badge").first().innerText(), "succeeded");
  const log = await result.getByRole("link", { name: /its log/ }).getAttribute("href");
  const runId = log.replace("/runs/", "");
  const r = await fleet.api("GET", `/api/v1/runs/${runId}`);
  assert.equal(r.state, "succeeded");
  assert.equal(r.tasks[0].outputs.text, input);
  const out = await (
    await fetch(`${fleet.url}/api/v1/tasks/${r.tasks[0].id}/output`, { headers: { Authorization: `Bearer ${fleet.key}` } })
  ).text();
  assert.match(out, /sender_name/);
  assert.match(out, /ops/);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await answer.scrollIntoViewIfNeeded();
  await shot(page, "flow");
  assert.deepEqual(
    problems.filter((p) => !/Failed to load resource/.test(p)),
    [],
  );

  // The schedule form fires a synced flow, with its input and tweaks.
  await page.goto(fleet.url + "/schedules?new=1");
  const sf = page.getByRole("form", { name: "New schedule" });
  await sf.getByLabel("Name").fill("digest");
  await sf.getByRole("radio", { name: "Cron" }).check();
  await sf.getByLabel("Cron expression").fill("0 0 8 * * MON-FRI");
  await sf.getByLabel("Time zone").fill("Europe/Paris");
  await sf.getByRole("radio", { name: "LangFlow flow" }).check();
  await sf.getByLabel("Flow to run").selectOption({ label: "echo (lab)" });
  await sf.getByLabel("Input text").fill("news");
  await sf.getByLabel("Tweaks (a JSON object)").fill('{"ChatOutput.sender_name": "ops"}');
  await sf.getByRole("button", { name: "Add schedule" }).click();
  await page.waitForURL(/\/schedules\/digest$/);
  const digest = await fleet.api("GET", "/api/v1/schedules/digest");
  assert.equal(digest.when, "cron 0 0 8 * * MON-FRI (Europe/Paris)");
  assert.equal(digest.target.kind, "flow");
  assert.equal(digest.target.name, "echo");
  assert.deepEqual(digest.target.params, { input: "news", source: "lab", tweaks: ['ChatOutput.sender_name="ops"'] });
  await until(async () => /\+0[12]:00/.test(await page.getByTestId("next-fires").innerText()), 10000, "fires in Paris time");
  await fleet.api("DELETE", "/api/v1/schedules/digest");

  // Remove the source, with a confirmation.
  await page.goto(fleet.url + "/flows");
  await page.getByRole("button", { name: "Remove lab" }).click();
  await page.getByRole("button", { name: "Yes, remove" }).click();
  await until(async () => (await page.locator('[data-source="lab"]').count()) === 0, 10000, "source removed");
  assert.deepEqual(await fleet.api("GET", "/api/v1/langflow/sources"), []);
});

async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** HERD_LANGFLOW, else the LangFlow scripts/test.sh installs (as herd-testkit finds it). */
function langflowProgram() {
  if (process.env.HERD_LANGFLOW) return process.env.HERD_LANGFLOW;
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  const p = join(cache, "herd-test", "langflow-1.13.0", "bin", "langflow");
  return existsSync(p) ? p : null;
}

/**
 * A real LangFlow as herd-testkit starts one: a free port, backend only, its database and
 * caches in a temp dir, auto-login, no telemetry; then an API key and the flow `echo`
 * (Chat Input → Chat Output).
 */
async function startLangflow(program) {
  const dir = mkdtempSync(join(tmpdir(), "herd-web-langflow-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("LANGFLOW_")));
  Object.assign(env, {
    LANGFLOW_AUTO_LOGIN: "true",
    LANGFLOW_CONFIG_DIR: join(dir, "config"),
    LANGFLOW_DATABASE_URL: `sqlite:///${join(dir, "langflow.db")}`,
    LANGFLOW_KNOWLEDGE_BASES_DIR: join(dir, "knowledge_bases"),
    LANGFLOW_LOG_FILE: join(dir, "langflow.log"),
    LANGFLOW_TELEMETRY_WRITER_OUTBOX_DIR: join(dir, "outbox"),
    XDG_CACHE_HOME: join(dir, "cache"),
    DO_NOT_TRACK: "true",
    LANGFLOW_DO_NOT_TRACK: "true",
    LANGFLOW_CREATE_STARTER_PROJECTS: "false",
    LANGFLOW_MCP_COMPOSER_ENABLED: "false",
    LANGFLOW_ADD_PROJECTS_TO_MCP_SERVERS: "false",
    LANGFLOW_STORE: "false",
  });
  const log = [];
  const child = spawn(
    program,
    ["run", "--host", "127.0.0.1", "--port", String(port), "--backend-only", "--no-open-browser", "--workers", "1"],
    { env, cwd: dir, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout.on("data", (d) => log.push(String(d)));
  child.stderr.on("data", (d) => log.push(String(d)));
  const stop = () => {
    // Its workers are its children, in its process group.
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`LangFlow exited ${child.exitCode}`);
        return (await fetch(url + "/health")).ok;
      },
      180000,
      "LangFlow to answer /health",
    );
  } catch (e) {
    stop();
    throw new Error(`${e.message}\n${log.join("").slice(-3000)}`);
  }
  const call = async (method, path, headers, body, want) => {
    const res = await fetch(url + path, {
      method,
      headers: { "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const t = await res.text();
    if (res.status !== want) throw new Error(`LangFlow ${method} ${path}: ${res.status} ${t.slice(0, 500)}`);
    return JSON.parse(t);
  };
  const login = await call("GET", "/api/v1/auto_login", {}, undefined, 200);
  const made = await call("POST", "/api/v1/api_key/", { Authorization: `Bearer ${login.access_token}` }, { name: "herd-web-test" }, 200);
  const key = made.api_key;
  const all = await call("GET", "/api/v1/all", { "x-api-key": key }, undefined, 200);
  const template = (kind) => Object.values(all).map((c) => c?.[kind]).find(Boolean);
  const chatIn = template("ChatInput");
  const chatOut = template("ChatOutput");
  /** Chat Input → Chat Output named `name`; its id. */
  const createFlow = async (name, endpoint) => {
    const [ci, co] = ["ChatInput-herd1", "ChatOutput-herd2"];
    const node = (id, type, tpl, x) => ({ id, type: "genericNode", position: { x, y: 0 }, data: { id, type, node: tpl } });
    const field = chatOut.template.input_value;
    const source = { dataType: "ChatInput", id: ci, name: "message", output_types: ["Message"] };
    const target = { fieldName: "input_value", id: co, inputTypes: field.input_types ?? ["Message"], type: field.type ?? "str" };
    // The handles as LangFlow's editor writes them: JSON with `œ` for `"`.
    const handle = (v) => JSON.stringify(v).replaceAll('"', "œ");
    const edge = {
      id: `reactflow__edge-${ci}-${co}`,
      source: ci,
      target: co,
      sourceHandle: handle(source),
      targetHandle: handle(target),
      data: { sourceHandle: source, targetHandle: target },
    };
    const flow = {
      name,
      description: "Chat Input to Chat Output",
      endpoint_name: endpoint,
      data: { nodes: [node(ci, "ChatInput", chatIn, 0), node(co, "ChatOutput", chatOut, 400)], edges: [edge], viewport: { x: 0, y: 0, zoom: 1 } },
    };
    return (await call("POST", "/api/v1/flows/", { "x-api-key": key }, flow, 201)).id;
  };
  await createFlow("echo", "echo");
  return { url, key, createFlow, stop };
}
