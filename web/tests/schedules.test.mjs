// Schedules and LangFlow flows: a schedule added from the form fires (its fires link to their
// runs, and the API agrees), pauses (and then fires no more), is edited (removed and re-added)
// and deleted; a bad cron expression shows the API's one line; hostile text shows as text.
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

let fleet, b;
before(async () => {
  fleet = await startFleet();
  b = await openBrowser();
  await login(b.page, fleet.url, fleet.key);
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
});

const fires = (name) => fleet.api("GET", `/api/v1/schedules/${name}/fires?limit=1000`);

test("a schedule added from the form fires, links its runs, pauses, and is deleted", async () => {
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

test("hostile names and commands show as text; edit removes and re-adds", async () => {
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

  // Edit: prefilled, says it removes and re-adds, saves a new interval.
  await row.getByRole("link", { name: "Edit hostile" }).click();
  const edit = page.getByRole("form", { name: "Edit schedule" });
  await edit.waitFor();
  await edit.getByTestId("edit-note").waitFor();
  assert.equal(await edit.getByLabel("Interval").inputValue(), "5m");
  assert.equal(await edit.getByRole("textbox", { name: "Command" }).inputValue(), `echo '${HOSTILE}'`);
  await edit.getByLabel("Interval").fill("7m");
  await edit.getByRole("button", { name: "Save (remove and re-add)" }).click();
  await until(async () => (await fleet.api("GET", "/api/v1/schedules/hostile")).when === "every 7m", 10000, "edited");
  await until(async () => (await page.getByTestId("definition").innerText()).includes("every 7m"), 10000, "edit shown");
  // A refused edit keeps the schedule as it was.
  await page.goto(fleet.url + "/schedules/hostile?edit=1");
  await page.getByRole("form", { name: "Edit schedule" }).getByLabel("Interval").fill("1ms");
  await page.getByRole("button", { name: "Save (remove and re-add)" }).click();
  await until(
    async () => /kept as it was/.test(await page.getByRole("form", { name: "Edit schedule" }).getByRole("alert").innerText()),
    10000,
    "refused edit",
  );
  assert.equal((await fleet.api("GET", "/api/v1/schedules/hostile")).when, "every 7m");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(
    problems.filter((p) => !/Failed to load resource/.test(p)),
    [],
  );
  await fleet.api("DELETE", "/api/v1/schedules/hostile");
});
