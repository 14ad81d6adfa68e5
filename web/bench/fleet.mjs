// The fleet page's first load against a simulated fleet, measured in Chromium:
// compressed script bytes of the first load, and the time from navigation until the table
// shows every machine — beside the floor of the same run (fetching and parsing the same
// machine list with no page around it).
//
//   node web/bench/fleet.mjs [--machines 10000] [--rounds 5]
//
// HERD_BIN picks the herd binary (default: the release build); prints one JSON line.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { startFleet, openBrowser, until, repo, sleep } from "../tests/harness.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const machines = arg("machines", 10000);
const rounds = arg("rounds", 5);
if (!process.env.HERD_BIN) {
  process.env.HERD_BIN = join(process.env.CARGO_TARGET_DIR || join(repo, "target"), "release", "herd");
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { median: q(0.5), min: s[0], max: s[s.length - 1] };
};

const fleet = await startFleet({ agents: [] });
let sim;
try {
  const t = await fleet.api("POST", "/api/v1/tokens", { uses: machines, ttl_secs: 3600, any_labels: true });
  sim = spawn(
    process.env.HERD_BIN,
    [
      "bench", "fleet", "--server", fleet.url, "--agents", String(machines),
      "--state-file", join(fleet.dir, "sim.json"), "--no-process", "-l", "rack=r1",
    ],
    { env: { ...process.env, HERD_JOIN_TOKEN: t.token }, stdio: ["ignore", "ignore", "inherit"] },
  );
  const started = Date.now();
  await until(
    async () => (await fleet.api("GET", "/api/v1/fleet/summary")).online >= machines + 1,
    600000,
    `${machines} simulated machines online`,
  );
  const joinSecs = (Date.now() - started) / 1000;
  // Every simulated machine has sent a heartbeat with metrics.
  await sleep(3000);

  const loads = [];
  const floors = [];
  let scriptBytes = 0;
  let apiBytes = 0;
  for (let r = 0; r < rounds; r++) {
    const b = await openBrowser();
    try {
      // A cold tab of a fresh browser, its session already holding the key (as after a login).
      await b.context.addInitScript((k) => sessionStorage.setItem("herd.key", k), fleet.key);
      const page = b.page;
      const cdp = await b.context.newCDPSession(page);
      await cdp.send("Network.enable");
      await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
      const t0 = Date.now();
      await page.goto(fleet.url + "/fleet");
      await page.waitForFunction(
        (n) => {
          const el = document.querySelector("[data-testid=row-count]");
          return el && el.textContent.startsWith(`${n} machine`) && document.querySelectorAll(".vrow").length > 0;
        },
        machines + 1,
        { timeout: 60000, polling: "raf" },
      );
      const wall = Date.now() - t0;
      const m = await page.evaluate(() => {
        const nav = performance.getEntriesByType("navigation")[0];
        const res = performance.getEntriesByType("resource");
        const scripts = res.filter((e) => e.initiatorType === "script" || e.name.endsWith(".js"));
        const agents = res.filter((e) => e.name.includes("/api/v1/agents"));
        return {
          shown: performance.now() - nav.startTime,
          script: scripts.reduce((a, e) => a + e.encodedBodySize, 0),
          api: agents.length ? agents[agents.length - 1].encodedBodySize : 0,
        };
      });
      loads.push(Math.round(m.shown));
      scriptBytes = m.script;
      apiBytes = m.api;
      // The floor: the same list fetched and parsed in the same page, nothing rendered.
      const floor = await page.evaluate(async () => {
        const key = sessionStorage.getItem("herd.key");
        const t = performance.now();
        const res = await fetch("/api/v1/agents", { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
        const list = await res.json();
        return { ms: performance.now() - t, n: list.length };
      });
      floors.push(Math.round(floor.ms));
      void wall;
    } finally {
      await b.browser.close();
    }
  }
  console.log(
    JSON.stringify({
      machines: machines + 1,
      join_s: Math.round(joinSecs),
      first_load_script_gzip_bytes: scriptBytes,
      agents_list_bytes: apiBytes,
      shown_ms: stats(loads),
      floor_fetch_parse_ms: stats(floors),
      rounds,
    }),
  );
} finally {
  sim?.kill("SIGTERM");
  await fleet.stop();
}
