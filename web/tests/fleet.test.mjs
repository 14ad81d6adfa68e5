// Login, the fleet and a machine's page, and the dashboard's safety: a wrong key refused, the
// key never in a URL, hostile names and labels shown as text, a strict CSP on every page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFleet, openBrowser, login, shot, until } from "./harness.mjs";

let fleet, b;
before(async () => {
  fleet = await startFleet();
  b = await openBrowser();
});
after(async () => {
  await b?.browser.close();
  await fleet?.stop();
});

test("a wrong key is refused with the server's one line, and nothing is stored", async () => {
  const { page } = b;
  await page.goto(fleet.url + "/fleet");
  await page.getByLabel("API key").fill("hk_00000000_wrong");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").waitFor();
  assert.match(await page.getByRole("alert").innerText(), /API key/i);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("herd.key")), null);
  await shot(page, "login-refused");
});

test("log in; both agents are online on the fleet page; the key is in no URL", async () => {
  const { page } = b;
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  await login(page, fleet.url, fleet.key);
  await until(async () => (await page.getByTestId("fleet-online").innerText()) === "2", 15000, "2 online");
  assert.equal(await page.getByTestId("fleet-total").innerText(), "2");
  for (const name of ["alpha", "beta"]) {
    await page.locator(`[data-machine="${name}"]`).waitFor();
  }
  // The selector filters the table, with a live count.
  await page.getByLabel("Filter (selector)").fill("role=beta");
  await until(async () => /^1 match/.test(await page.getByTestId("match-count").innerText()), 10000, "1 match");
  await until(async () => (await page.locator(".vrow").count()) === 1, 10000, "one row");
  assert.ok(page.url().includes("sel=role%3Dbeta"), page.url());
  await shot(page, "fleet");
  await page.getByLabel("Filter (selector)").fill("role=(");
  await page.getByRole("alert").first().waitFor();
  for (const u of urls) assert.ok(!u.includes(fleet.key), `key in URL ${u}`);
});

test("machine page: facts, labels edited, hostile label text shown as text", async () => {
  const { page, problems } = b;
  // Label values may hold < > / ; " ' — everything but whitespace and , & ! ( ) =.
  const hostile = "<b>bold</b><script>top.__pwned++</script><img/src/onerror>";
  await fleet.api("POST", "/api/v1/agents/beta/labels", { set: { note: hostile } });
  await page.goto(fleet.url + "/machines/beta");
  await page.getByRole("heading", { name: /beta/ }).waitFor();
  await page.getByTestId("facts").waitFor();
  await page.getByLabel("New label (key=value)").fill("tier=gold");
  await page.getByRole("button", { name: "Set label" }).click();
  await until(async () => (await page.getByTestId("labels").innerText()).includes("tier=gold"), 10000, "label shown");
  const agent = await fleet.api("GET", "/api/v1/agents/beta");
  assert.equal(agent.labels.tier, "gold");
  await page.getByRole("button", { name: "Remove label tier" }).click();
  await until(async () => !(await page.getByTestId("labels").innerText()).includes("tier=gold"), 10000, "label removed");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.ok((await page.getByTestId("labels").innerText()).includes(`note=${hostile}`));
  assert.equal(await page.locator("[data-testid=labels] b, [data-testid=labels] img, [data-testid=labels] script").count(), 0);
  // The fleet table shows it as text too.
  await page.goto(fleet.url + "/fleet");
  await page.locator('[data-machine="beta"]').waitFor();
  assert.ok((await page.locator('[data-machine="beta"]').innerText()).includes(hostile));
  assert.equal(await page.locator(".vgrid b, .vgrid img, .vgrid script").count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await page.goto(fleet.url + "/machines/beta");
  await page.getByTestId("facts").waitFor();
  await shot(page, "machine");
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
});

test("every page carries a strict Content-Security-Policy and sets no cookie", async () => {
  for (const path of ["/", "/fleet", "/machines/beta", "/runs/r_x"]) {
    const res = await fetch(fleet.url + path);
    assert.equal(res.status, 200, path);
    const csp = res.headers.get("content-security-policy");
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get("set-cookie"), null);
  }
  const api404 = await fetch(fleet.url + "/api/v1/nope");
  assert.equal(api404.status, 404);
  assert.match((await api404.json()).error, /no such API endpoint/);
});

test("a viewer sees no run or edit controls; logging out forgets the key", async () => {
  const viewer = await fleet.api("POST", "/api/v1/keys", { name: "watcher", role: "viewer" });
  const v = await openBrowser();
  try {
    const { page } = v;
    await login(page, fleet.url, viewer.key);
    await page.locator('[data-machine="alpha"]').waitFor();
    assert.equal(await page.getByRole("link", { name: "Run on these…" }).count(), 0);
    assert.match(await page.locator(".who").innerText(), /watcher\s+viewer/);
    await page.goto(fleet.url + "/machines/alpha");
    await page.getByTestId("facts").waitFor();
    assert.equal(await page.getByRole("button", { name: "Set label" }).count(), 0);
    assert.equal(await page.getByRole("link", { name: /Run on alpha/ }).count(), 0);
    assert.equal(await page.getByRole("button", { name: "Revoke" }).count(), 0);
    await shot(page, "machine-viewer");
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("API key").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("herd.key")), null);
    // A view's URL still leads to the login, then back to nothing without a key.
    await page.goto(fleet.url + "/machines/alpha");
    await page.getByLabel("API key").waitFor();
  } finally {
    await v.browser.close();
  }
});

test("every section fits a laptop screen (1280×720) without sideways scrolling", async () => {
  const { page } = b;
  await page.setViewportSize({ width: 1280, height: 720 });
  try {
    for (const path of ["/fleet", "/machines/alpha", "/run", "/runs", "/workflows", "/schedules", "/flows", "/ask", "/audit", "/settings/keys"]) {
      await page.goto(fleet.url + path);
      await page.locator("main h1, main h2").first().waitFor();
      const [sw, cw] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(sw <= cw, `${path}: page is ${sw}px wide in a ${cw}px window`);
    }
    await page.goto(fleet.url + "/fleet");
    await page.locator('[data-machine="alpha"]').waitFor();
    await shot(page, "fleet-laptop");
  } finally {
    await page.setViewportSize({ width: 1440, height: 900 });
  }
});
