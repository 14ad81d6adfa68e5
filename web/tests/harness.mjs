// The dashboard's browser tests run against a real `herd up` (server and its local agent
// `alpha`) plus a second real agent `beta`, driven through Debian's Chromium by
// playwright-core. Each test file starts its own herd in a temp dir and stops it after.
//
// HERD_BIN: the herd binary (default: $CARGO_TARGET_DIR or ../target, debug/herd).
// HERD_CHROMIUM: the browser (default: chromium on PATH).
// HERD_WEB_DIR: serve the dashboard from this dir (default: herd's own copy of web/dist).
// Screenshots go to web/test-results/ (HERD_TEST_ARTIFACTS overrides).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");

export function herdBin() {
  if (process.env.HERD_BIN) return process.env.HERD_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(repo, "target");
  return join(target, "debug", "herd");
}

export function chromiumPath() {
  if (process.env.HERD_CHROMIUM) return process.env.HERD_CHROMIUM;
  for (const c of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${c}`], { encoding: "utf8" }).trim();
    } catch {
      /* next */
    }
  }
  throw new Error("no Chromium found: install Debian's chromium package or set HERD_CHROMIUM");
}

export const artifacts = process.env.HERD_TEST_ARTIFACTS || join(repo, "web", "test-results");

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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `f()` returns a truthy value (or throws the last error after `ms`). */
export async function until(f, ms = 20000, what = "condition") {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/**
 * Starts `herd up` (agent `alpha`) and a second agent `beta` in a fresh temp dir; resolves
 * once both are online. `env` is added to the server's environment (e.g. HERD_LLM_URL).
 */
export async function startFleet({ env = {}, agents = ["beta"] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "herd-web-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const procs = [];
  const baseEnv = { ...process.env, HERD_CONFIG: join(dir, "config.toml"), NO_COLOR: "1" };
  delete baseEnv.HERD_SERVER;
  delete baseEnv.HERD_API_KEY;
  const log = [];
  const up = spawn(
    herdBin(),
    ["up", "--data-dir", join(dir, "data"), "--listen", `127.0.0.1:${port}`, "--name", "alpha"],
    { env: { ...baseEnv, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  procs.push(up);
  let out = "";
  up.stdout.on("data", (d) => {
    out += d;
    log.push(String(d));
  });
  up.stderr.on("data", (d) => log.push(String(d)));
  const key = await until(() => /admin key\s+(hk_\S+)/.exec(out)?.[1], 60000, "herd up's admin key").catch((e) => {
    throw new Error(`${e.message}\n${log.join("")}`);
  });
  const api = async (method, path, body, k = key) => {
    const res = await fetch(url + path, {
      method,
      headers: { Authorization: `Bearer ${k}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  for (const name of agents) {
    const t = await api("POST", "/api/v1/tokens", { uses: 1, ttl_secs: 600, any_labels: true });
    const a = spawn(
      herdBin(),
      ["agent", "--server", url, "--name", name, "--state-dir", join(dir, name), "--label", `role=${name}`],
      { env: { ...baseEnv, HERD_JOIN_TOKEN: t.token }, stdio: ["ignore", "pipe", "pipe"] },
    );
    a.stdout.on("data", (d) => log.push(String(d)));
    a.stderr.on("data", (d) => log.push(String(d)));
    procs.push(a);
  }
  const want = ["alpha", ...agents];
  await until(
    async () => {
      const list = await api("GET", "/api/v1/agents");
      return want.every((n) => list.some((a) => a.name === n && a.online));
    },
    60000,
    `agents ${want.join(", ")} online`,
  );
  return {
    dir,
    url,
    key,
    api,
    log,
    /** Runs the herd CLI against this server. */
    cli(args, input) {
      return execFileSync(herdBin(), args, {
        env: { ...baseEnv, HERD_SERVER: url, HERD_API_KEY: key },
        encoding: "utf8",
        input,
      });
    },
    async stop() {
      for (const p of procs.reverse()) {
        if (p.exitCode === null) p.kill("SIGTERM");
      }
      await sleep(300);
      for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A headless Chromium page, with console errors and CSP violations collected. */
export async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  return { browser, context, page, problems };
}

/** Logs in through the login form. */
export async function login(page, url, key) {
  await page.goto(url + "/");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("link", { name: "Fleet" }).waitFor();
}

/** Saves a screenshot of the page as a test artifact. */
export async function shot(page, name) {
  if (!existsSync(artifacts)) mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
}
