// Benchmark of a run's live view under a flood of output: one machine streams ~100 MB into
// its terminal while a key is pressed into a focused input every ~200 ms; the delay between
// each key event's creation and its handler running (event.timeStamp to performance.now())
// shows how responsive the page stays; so do the gaps between animation frames. The press
// round trip (Playwright → browser → page) also counts time outside the page (on a loaded
// machine, the browser process waiting for a CPU). Prints one JSON line of figures.
//
//   cd web && npm run build && HERD_BIN=/work/bin/herd HERD_WEB_DIR=$PWD/dist node bench/terminal.mjs
//
// BENCH_BYTES sets the stream's size (default 100000000).
import { startFleet, openBrowser, login, shot, sleep } from "../tests/harness.mjs";

const BYTES = Number(process.env.BENCH_BYTES || 100_000_000);
const EVERY = 200;
const SEND = Number(process.env.BENCH_SEND_MS || 25);

const stats = (xs) => {
  if (!xs.length) return { n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const r = (v) => Math.round(v * 10) / 10;
  return { n: s.length, median: r(q(0.5)), p95: r(q(0.95)), max: r(s[s.length - 1]) };
};

const fleet = await startFleet({ agents: [] });
const b = await openBrowser();
const { page } = b;
try {
  await login(page, fleet.url, fleet.key);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const heapMb = async () => {
    const { metrics } = await cdp.send("Performance.getMetrics");
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    return Math.round((m.JSHeapUsedSize / 1048576) * 10) / 10;
  };

  // A focused input outside the app whose keydown handler records its delay, and the
  // longest main-thread task seen.
  const probe = async () => {
    await page.evaluate(() => {
      const w = window;
      if (!document.getElementById("bench-key")) {
        const i = document.createElement("input");
        i.id = "bench-key";
        i.setAttribute("aria-label", "bench");
        i.style.cssText = "position:fixed;bottom:0;right:0;width:40px;z-index:99";
        document.body.appendChild(i);
        i.addEventListener("keydown", (e) => w.__delays.push(performance.now() - e.timeStamp));
      }
      w.__delays = [];
      w.__gaps = [];
      w.__longest = 0;
      if (!w.__raf) {
        w.__raf = true;
        let last = performance.now();
        const tick = (t) => {
          w.__gaps.push(t - last);
          last = t;
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }
      w.__from = performance.now();
      if (!w.__lt) {
        w.__lt = new PerformanceObserver((l) => {
          for (const e of l.getEntries()) if (e.startTime >= w.__from) w.__longest = Math.max(w.__longest, e.duration);
        });
        w.__lt.observe({ type: "longtask", buffered: false });
      }
      document.getElementById("bench-key").focus();
    });
  };
  const press = async () => {
    await page.evaluate(() => document.getElementById("bench-key")?.focus());
    const t = Date.now();
    await page.keyboard.press("a");
    return Date.now() - t;
  };
  const collect = () =>
    page.evaluate(() => ({ delays: window.__delays, gaps: window.__gaps.slice(1), longest: window.__longest }));

  // The floor: the same presses on the Run page with nothing streaming.
  await page.goto(`${fleet.url}/run?target=alpha`);
  await page.getByLabel("Command").waitFor();
  await probe();
  const floorRtt = [];
  for (let i = 0; i < 25; i++) {
    floorRtt.push(await press());
    await sleep(EVERY);
  }
  const floor = await collect();

  // The stream: ~BYTES of 120-column lines into one terminal.
  const lines = Math.floor(BYTES / 121);
  await page.getByLabel("Command").fill(`yes "$(head -c 120 /dev/zero | tr '\\0' x)" | head -n ${lines}`);
  const heapBefore = await heapMb();
  const cpu0 = process.cpuUsage();
  // The probe is set before Start: the run's view replaces the form in the same document.
  await probe();
  const t0 = Date.now();
  await page.getByRole("button", { name: "Start" }).click();
  const rtt = [];
  let heapPeak = 0;
  let ended = 0;
  // Key presses sent every SEND ms straight through the DevTools protocol, not waiting for
  // each to be handled (a busy page must not slow the sampling down): each one's delay is
  // measured in the page, from the event's creation to its handler.
  let sending = true;
  const sender = (async () => {
    const input = await page.context().newCDPSession(page);
    const pending = [];
    while (sending) {
      const key = { key: "a", code: "KeyA", text: "a", windowsVirtualKeyCode: 65 };
      pending.push(input.send("Input.dispatchKeyEvent", { type: "keyDown", ...key }).catch(() => {}));
      pending.push(input.send("Input.dispatchKeyEvent", { type: "keyUp", ...key }).catch(() => {}));
      await sleep(SEND);
    }
    await Promise.all(pending);
  })();
  await page.waitForURL(/\/runs\/[0-9a-f]+$/, { timeout: 30000 });
  await page.locator('[data-testid="term-alpha"] .xterm-rows').waitFor({ timeout: 30000 });
  while (Date.now() - t0 < 600_000) {
    rtt.push(await press());
    if (rtt.length % 5 === 0) heapPeak = Math.max(heapPeak, await heapMb());
    if (await page.getByTestId("summary").count()) {
      ended = Date.now();
      break;
    }
    await sleep(EVERY);
  }
  sending = false;
  await sender;
  const during = await collect();
  const cpu = process.cpuUsage(cpu0);
  const id = new URL(page.url()).pathname.split("/").pop();
  const run = await fleet.api("GET", `/api/v1/runs/${id}`);
  await sleep(1000);
  await cdp.send("HeapProfiler.enable").catch(() => {});
  await cdp.send("HeapProfiler.collectGarbage").catch(() => {});
  const heapEnd = await heapMb();
  const skipped = await page.getByTestId("skipped").innerText().catch(() => "none");
  await shot(page, "bench-terminal");
  heapPeak = Math.max(heapPeak, heapEnd);
  console.log(
    JSON.stringify({
      bench: "terminal",
      bytes: run.tasks[0].out_total,
      task_state: run.tasks[0].state,
      stream_s: ended ? Math.round((ended - t0) / 100) / 10 : null,
      key_delay_ms_floor: stats(floor.delays),
      key_delay_ms_streaming: stats(during.delays),
      frame_gap_ms_floor: stats(floor.gaps),
      frame_gap_ms_streaming: stats(during.gaps),
      press_roundtrip_ms_floor: stats(floorRtt),
      press_roundtrip_ms_streaming: stats(rtt),
      skipped_in_terminal: skipped,
      longest_task_ms_streaming: Math.round(during.longest),
      bench_process_cpu_s: Math.round((cpu.user + cpu.system) / 1e5) / 10,
      js_heap_mb_before: heapBefore,
      js_heap_mb_peak: heapPeak,
      js_heap_mb_end: heapEnd,
    }),
  );
} finally {
  await b.browser.close();
  await fleet.stop();
}
