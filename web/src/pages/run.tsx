// Run: a command over the machines a selector picks (`/run`, `?target=SEL` prefills), and a
// run's live view (`/runs/:id`): one terminal per machine (a grid when few, tabs when many),
// stdin and resizes for an interactive single-machine run, cancel, and the summary once the
// run has ended. Output reaches the terminals through bounded feeds (components/run-feed.ts);
// xterm.js is loaded only when a run is shown. Output is terminal text, never HTML.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, post, seg } from "../api";
import { navigate, setQuery } from "../router";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import type { FleetSummary, Progress, Run, Task } from "../types";
import { Badge, ErrorLine, fmtBytes, fmtDuration, fmtTime, useDebounced, useLoad, useTitle } from "../util";
import { LiveRun, handOff, isFinal, takeOver, type Limit, type RunRequest } from "../components/run-live";
import { SelectorInput } from "./fleet";
import "./run.css";

/** Terminals side by side up to this many machines; tabs beyond. */
const GRID_UP_TO = 4;
/** Task states are polled for runs of up to this many machines. */
const POLL_UP_TO = 200;

/** `500ms`, `30s`, `5m`, `1h`, or seconds alone; null for blank; NaN when unreadable. */
export function parseDuration(s: string): number | null {
  const t = s.trim();
  if (!t) return null;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(t);
  if (!m) return NaN;
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(parseFloat(m[1]) * mult);
}

/** `5` or `10%`; null for blank; undefined when unreadable. */
function parseLimit(s: string): Limit | null | undefined {
  const t = s.trim();
  if (!t) return null;
  const p = /^(\d+)\s*%$/.exec(t);
  if (p) return Number(p[1]) <= 100 ? `${Number(p[1])}%` : undefined;
  return /^\d+$/.test(t) ? Number(t) : undefined;
}

function RunPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Run");
  const me = useMe();
  const [sel, setSel] = useState(query.get("target") ?? "");
  const [command, setCommand] = useState(query.get("command") ?? "");
  const [timeout, setTimeoutText] = useState("");
  const [concurrency, setConcurrency] = useState("");
  const [maxErrors, setMaxErrors] = useState("");
  const [batchWait, setBatchWait] = useState("");
  const [waitOffline, setWaitOffline] = useState("");
  const [interactive, setInteractive] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [needsApproval, setNeedsApproval] = useState(false);
  const [starting, setStarting] = useState(false);
  const pending = useRef<LiveRun | null>(null);

  const target = useDebounced(sel.trim(), 150);
  const sum = useLoad(
    (signal) => get<FleetSummary>("/api/v1/fleet/summary", { target }, signal),
    [target],
    3000,
  );
  const matched = target && !sum.error ? (sum.data?.matched ?? null) : null;
  const single = matched === 1;

  // An approval is for the command and machines it was asked for.
  useEffect(() => setNeedsApproval(false), [command, sel]);
  // Leaving the form before the run was created drops its socket.
  useEffect(() => () => pending.current?.close(), []);

  const start = (approve: boolean) => {
    setError(null);
    setNeedsApproval(false);
    const bad = (msg: string) => {
      setError(msg);
      return false;
    };
    const selector = sel.trim();
    if (!selector) return bad("choose the machines: a selector such as role=web or web-*, or * for every machine");
    if (!command.trim()) return bad("type the command to run");
    const req: RunRequest = { command, targets: [selector] };
    const to = parseDuration(timeout);
    if (Number.isNaN(to)) return bad(`bad timeout "${timeout}": write it as 500ms, 30s, 5m or 1h`);
    if (to) req.timeout_ms = to;
    const limits: RunRequest["limits"] = {};
    const c = parseLimit(concurrency);
    if (c === undefined || c === 0) return bad(`bad concurrency "${concurrency}": a number of at least 1, or a share such as 10%`);
    if (c !== null) limits.concurrency = c;
    const e = parseLimit(maxErrors);
    if (e === undefined) return bad(`bad max errors "${maxErrors}": a number, or a share such as 10%`);
    if (e !== null) limits.max_errors = e;
    const bw = parseDuration(batchWait);
    if (Number.isNaN(bw)) return bad(`bad batch wait "${batchWait}": write it as 500ms, 2s or 1m`);
    if (bw) limits.batch_wait_ms = bw;
    if (Object.keys(limits).length) req.limits = limits;
    const wo = parseDuration(waitOffline);
    if (Number.isNaN(wo)) return bad(`bad wait for offline machines "${waitOffline}": write it as 0, 10s or 1m`);
    if (wo !== null) req.wait_offline_ms = wo;
    if (interactive) {
      if (!single) return bad("an interactive run needs a selector that picks exactly one machine");
      req.interactive = true;
      req.tty = true;
      req.window = { rows: 24, cols: 100 };
    }
    if (approve) req.approve = true;
    pending.current?.close();
    setStarting(true);
    const live = LiveRun.start(req, (l) => {
      pending.current = null;
      handOff(l);
      navigate(`/runs/${seg(l.run!.id)}`, true);
    });
    pending.current = live;
    live.subscribe(() => {
      if (live.error && !live.run) {
        setStarting(false);
        setError(live.error);
        setNeedsApproval(/needs approval/i.test(live.error));
        pending.current = null;
      }
    });
    return true;
  };

  return (
    <section class="runpage">
      <h1>Run</h1>
      <form
        class="panel"
        onSubmit={(e) => {
          e.preventDefault();
          if (canRun(me)) start(false);
        }}
      >
        <div class="row">
          <SelectorInput value={sel} onInput={setSel} id="run-selector" label="Machines (selector)" placeholder="role=web & !web-3   (* for every machine)" />
        </div>
        <label for="run-command">Command</label>
        <textarea
          id="run-command"
          rows={4}
          spellcheck={false}
          value={command}
          placeholder="uptime"
          onInput={(e) => setCommand((e.target as HTMLTextAreaElement).value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && canRun(me)) {
              e.preventDefault();
              start(false);
            }
          }}
        />
        <p class="muted small">Run with bash on each machine. Ctrl+Enter starts.</p>
        <div class="run-opts">
          <div>
            <label for="run-timeout">Timeout</label>
            <input id="run-timeout" value={timeout} placeholder="none (e.g. 30s, 5m)" onInput={(e) => setTimeoutText((e.target as HTMLInputElement).value)} />
          </div>
          <fieldset>
            <legend>Rate control</legend>
            <div class="run-opts">
              <div>
                <label for="run-concurrency">Concurrency</label>
                <input id="run-concurrency" value={concurrency} placeholder="all at once (e.g. 5, 10%)" onInput={(e) => setConcurrency((e.target as HTMLInputElement).value)} />
              </div>
              <div>
                <label for="run-max-errors">Max errors</label>
                <input id="run-max-errors" value={maxErrors} placeholder="no limit (e.g. 2, 10%)" onInput={(e) => setMaxErrors((e.target as HTMLInputElement).value)} />
              </div>
              <div>
                <label for="run-batch-wait">Batch wait</label>
                <input id="run-batch-wait" value={batchWait} placeholder="none (e.g. 2s)" onInput={(e) => setBatchWait((e.target as HTMLInputElement).value)} />
              </div>
              <div>
                <label for="run-wait-offline">Wait for offline machines</label>
                <input id="run-wait-offline" value={waitOffline} placeholder="30s (0: lost at once)" onInput={(e) => setWaitOffline((e.target as HTMLInputElement).value)} />
              </div>
            </div>
          </fieldset>
        </div>
        <label class="check">
          <input
            type="checkbox"
            checked={interactive && single}
            disabled={!single}
            onChange={(e) => setInteractive((e.target as HTMLInputElement).checked)}
          />
          Interactive (stdin + PTY)
        </label>
        <p class="muted small">
          {single ? "Type into the machine's terminal; the command runs under a PTY." : "Only when the selector matches exactly one machine."}
        </p>
        <ErrorLine error={error} />
        {canRun(me) ? (
          <div class="row">
            <button type="submit" class="primary" disabled={starting}>
              {starting ? "Starting…" : "Start"}
            </button>
            {needsApproval && (
              <button type="button" class="danger" disabled={starting} onClick={() => start(true)}>
                Approve and run
              </button>
            )}
          </div>
        ) : (
          <p class="notice" data-testid="viewer-note">
            Your key is a viewer: it watches runs but cannot start them.
          </p>
        )}
      </form>
    </section>
  );
}

/** Re-renders on every change of the live run. */
function useLive(live: LiveRun | null) {
  const [, bump] = useState(0);
  useEffect(() => {
    if (!live) return;
    bump((n) => n + 1);
    return live.subscribe(() => bump((n) => n + 1));
  }, [live]);
}

function counts(tasks: Task[]): Progress {
  const p: Progress = { total: tasks.length, pending: 0, running: 0, waiting: 0, succeeded: 0, failed: 0, skipped: 0, cancelled: 0 };
  for (const t of tasks) {
    if (t.state === "queued") p.pending++;
    else if (t.state === "dispatched" || t.state === "running") p.running++;
    else if (t.state === "succeeded") p.succeeded++;
    else if (t.state === "skipped") p.skipped++;
    else if (t.state === "cancelled") p.cancelled++;
    else p.failed++;
  }
  return p;
}

function RunView({ params, query }: { params: Record<string, string>; query: URLSearchParams }) {
  const id = params.id;
  useTitle(`Run ${id.slice(0, 8)}`);
  const me = useMe();
  const [attempt, setAttempt] = useState(0);
  const [live, setLive] = useState<LiveRun | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState(false);
  useEffect(() => {
    const l = (attempt === 0 && takeOver(id)) || LiveRun.attach(id);
    setLive(l);
    return () => l.close();
  }, [id, attempt]);
  useLive(live);

  const ended = !!live?.ended;
  // The socket says when a task ends; its start (dispatched → running) is polled, for runs
  // small enough to read whole every few seconds (a big fan-out has its progress counts).
  const big = (live?.tasks.length ?? 0) > POLL_UP_TO;
  const poll = useLoad(
    (signal) => get<Run & { tasks: Task[] }>(`/api/v1/runs/${seg(id)}`, {}, signal),
    [id, ended, big],
    ended || big ? undefined : 2000,
  );
  useEffect(() => {
    if (poll.data && live && !live.ended) live.merge(poll.data, poll.data.tasks);
  }, [poll.data, live]);

  const run = live?.run ?? poll.data ?? null;
  const tasks = live?.run ? live.tasks : [];
  const running = !!run && run.state === "running" && !ended;
  const interactive = !!run && (run.spec.interactive || run.spec.tty) && tasks.length === 1;
  const progress = live?.progress && !ended ? live.progress : counts(tasks);

  const cancel = async () => {
    setActionError(null);
    setCancelling(true);
    try {
      if (!live?.cancel()) await post(`/api/v1/runs/${seg(id)}/cancel`);
    } catch (e) {
      setActionError(e);
      setCancelling(false);
    }
  };

  return (
    <section class="runview">
      <div class="row">
        <h1>
          Run <code>{id}</code>
        </h1>
        {run && <Badge state={ended || !running ? run.state : "running"} />}
        <span class="grow" />
        {run && <a class="button" href={`/run?target=${encodeURIComponent(run.selector)}&command=${encodeURIComponent(run.command)}`}>Run again…</a>}
      </div>
      {poll.error && !(poll.error instanceof ApiError && poll.error.status === 0 && live?.run) && <ErrorLine error={poll.error} />}
      {run && (
        <div class="panel">
          <pre class="run-cmd" data-testid="run-command">
            {run.command}
          </pre>
          <dl class="kv">
            <dt>Machines</dt>
            <dd class="mono">{run.selector}</dd>
            <dt>Started</dt>
            <dd>
              {fmtTime(run.created_at)} by {run.created_by}
            </dd>
            {run.finished_at && (
              <>
                <dt>Ended</dt>
                <dd>
                  {fmtTime(run.finished_at)} ({fmtDuration(run.finished_at - run.created_at)})
                </dd>
              </>
            )}
            {(run.spec.timeout_ms > 0 || run.spec.interactive || run.spec.tty) && (
              <>
                <dt>Options</dt>
                <dd>
                  {[
                    run.spec.timeout_ms > 0 ? `timeout ${fmtDuration(run.spec.timeout_ms)}` : "",
                    run.spec.interactive ? "interactive" : "",
                    run.spec.tty ? "PTY" : "",
                  ]
                    .filter(Boolean)
                    .join(", ")}
                </dd>
              </>
            )}
          </dl>
        </div>
      )}
      <div class="row run-bar">
        <span data-testid="progress" class="progress" aria-live="polite">
          {tasks.length > 0 && (
            <>
              <b>
                {progress.succeeded + progress.failed + progress.skipped + progress.cancelled}/{progress.total}
              </b>{" "}
              done
              {progress.pending > 0 && <> · {progress.pending} pending</>}
              {progress.running > 0 && <> · {progress.running} running</>}
              {progress.waiting > 0 && <> · {progress.waiting} waiting for their machine</>}
              {progress.succeeded > 0 && <> · <span class="s-succeeded">{progress.succeeded} succeeded</span></>}
              {progress.failed > 0 && <> · <span class="s-failed">{progress.failed} failed</span></>}
              {progress.cancelled > 0 && <> · {progress.cancelled} cancelled</>}
              {progress.skipped > 0 && <> · {progress.skipped} skipped</>}
            </>
          )}
        </span>
        <span class="grow" />
        {running && canRun(me) && interactive && (
          <button type="button" onClick={() => live?.eof()} title="Close the task's stdin (end of input)">
            EOF
          </button>
        )}
        {running && canRun(me) && (
          <button type="button" class="danger" onClick={cancel} disabled={cancelling || run?.cancel_requested}>
            {cancelling || run?.cancel_requested ? "Cancelling…" : "Cancel"}
          </button>
        )}
      </div>
      <ErrorLine error={actionError} />
      {live?.error && <ErrorLine error={live.error} />}
      {live?.lost && !live.error && (
        <p class="notice" role="status">
          Lost the connection to the server.{" "}
          <button type="button" onClick={() => setAttempt((n) => n + 1)}>
            Re-attach
          </button>
        </p>
      )}
      {ended && <Summary tasks={tasks} />}
      {live && live.run && (
        <Terminals
          key={`${id}:${attempt}`}
          live={live}
          interactive={interactive && running && canRun(me)}
          layout={query.get("layout") === "tabs" ? "tabs" : query.get("layout") === "grid" ? "grid" : null}
        />
      )}
    </section>
  );
}

function TaskHead({ t, skipped }: { t: Task; skipped: number }) {
  return (
    <div class="term-head">
      <a href={`/machines/${seg(t.agent_name)}`}>
        <b>{t.agent_name}</b>
      </a>
      <Badge state={t.state} />
      {t.exit_code !== null && <span class="muted">exit {t.exit_code}</span>}
      {t.exit_code === null && t.signal !== null && <span class="muted">signal {t.signal}</span>}
      <span class="grow" />
      {skipped > 0 && (
        <span class="muted small" data-testid="skipped" title="Output came faster than the terminal could show it">
          {fmtBytes(skipped)} skipped here
        </span>
      )}
      <a class="small" href={`/tasks/${seg(t.id)}`}>
        full output
      </a>
    </div>
  );
}

function Terminals({
  live,
  interactive,
  layout,
}: {
  live: LiveRun;
  interactive: boolean;
  layout: "grid" | "tabs" | null;
}) {
  const tasks = live.tasks;
  const [active, setActive] = useState(0);
  // Terminals once shown stay mounted (hidden behind their tab): rebuilding one would lose
  // its output.
  const mounted = useRef(new Set<number>());
  if (tasks.length === 0) return <p class="muted">This run picked no machine.</p>;
  const grid = layout ? layout === "grid" : tasks.length <= GRID_UP_TO;
  const tabKeys = (e: KeyboardEvent, i: number) => {
    const n = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!n) return;
    e.preventDefault();
    const j = (i + n + tasks.length) % tasks.length;
    setActive(j);
    (document.getElementById(`run-tab-${j}`) as HTMLElement | null)?.focus();
  };
  return (
    <div>
      {tasks.length > 1 && (
        <div class="row layout-switch" role="group" aria-label="Terminal layout">
          <span class="muted small">Terminals:</span>
          <button type="button" aria-pressed={grid} onClick={() => setQuery({ layout: "grid" })}>
            Grid
          </button>
          <button type="button" aria-pressed={!grid} onClick={() => setQuery({ layout: "tabs" })}>
            Tabs
          </button>
        </div>
      )}
      {!grid && (
        <div class="tabs" role="tablist" aria-label="Machines">
          {tasks.map((t, i) => (
            <button
              type="button"
              role="tab"
              id={`run-tab-${i}`}
              aria-selected={i === active}
              aria-controls={`run-panel-${i}`}
              tabIndex={i === active ? 0 : -1}
              onClick={() => setActive(i)}
              onKeyDown={(e) => tabKeys(e, i)}
            >
              {t.agent_name} <Badge state={t.state} />
            </button>
          ))}
        </div>
      )}
      <div class={grid ? `terms ${tasks.length === 1 ? "one" : ""}` : "terms-tabs"}>
        {tasks.map((t, i) => {
          const shown = grid || i === active;
          if (!shown && !mounted.current.has(i)) return null;
          mounted.current.add(i);
          return (
            <div
              key={t.id}
              class={`term ${shown ? "" : "hidden"}`}
              role={grid ? "group" : "tabpanel"}
              id={`run-panel-${i}`}
              aria-labelledby={grid ? undefined : `run-tab-${i}`}
              aria-label={grid ? t.agent_name : undefined}
              data-testid={`term-${t.agent_name}`}
              data-state={t.state}
            >
              <TaskHead t={t} skipped={live.feeds[i]?.skipped ?? 0} />
              <TermPane live={live} index={i} interactive={interactive} shown={shown} label={`Output of ${t.agent_name}`} big={!grid} />
            </div>
          );
        })}
      </div>
      {interactive && (
        <p class="muted small">Keys typed in the terminal go to the machine; Escape then Tab leaves it.</p>
      )}
    </div>
  );
}

type XTerm = import("@xterm/xterm").Terminal;

function TermPane({
  live,
  index,
  interactive,
  shown,
  label,
  big,
}: {
  live: LiveRun;
  index: number;
  interactive: boolean;
  shown: boolean;
  label: string;
  big?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const termRef = useRef<XTerm | null>(null);
  const inRef = useRef(interactive);
  inRef.current = interactive;
  const [error, setError] = useState<unknown>(null);
  const tty = !!live.run?.spec.tty;
  // One terminal for the task's whole life on the page: it is never rebuilt (that would lose
  // its output), only its input switched on and off.
  useEffect(() => {
    let disposed = false;
    let term: XTerm | null = null;
    let ro: ResizeObserver | null = null;
    const feed = live.feeds[index];
    import("../components/run-term")
      .then(({ Terminal, FitAddon }) => {
        const el = box.current;
        if (disposed || !el) return;
        term = new Terminal({
          scrollback: 5000,
          convertEol: !tty,
          disableStdin: !inRef.current,
          cursorBlink: inRef.current,
          fontSize: 13,
          fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
          theme: { background: "#0f1115", foreground: "#e3e7ee" },
        });
        const fit = new FitAddon();
        term.loadAddon(fit);
        term.open(el);
        termRef.current = term;
        const refit = () => {
          if (el.offsetParent === null) return;
          try {
            fit.fit();
          } catch {
            /* not laid out yet */
          }
        };
        refit();
        feed?.attach(term);
        // A terminal that takes no input lets every key through to the page (Tab moves on);
        // one that does keeps them, except Tab right after Escape, which leaves it.
        let escaped = false;
        term.attachCustomKeyEventHandler((e) => {
          if (!inRef.current) return false;
          if (e.type !== "keydown") return true;
          if (e.key === "Tab" && escaped) {
            escaped = false;
            return false;
          }
          escaped = e.key === "Escape";
          return true;
        });
        term.onData((d) => {
          if (inRef.current) live.stdin(d);
        });
        term.onResize(({ rows, cols }) => {
          if (inRef.current) live.resize(rows, cols);
        });
        if (inRef.current) {
          live.resize(term.rows, term.cols);
          term.focus();
        }
        ro = new ResizeObserver(refit);
        ro.observe(el);
      })
      .catch((e) => setError(new Error(`cannot load the terminal: ${e?.message ?? e}`)));
    return () => {
      disposed = true;
      ro?.disconnect();
      feed?.detach();
      term?.dispose();
      termRef.current = null;
    };
  }, [live, index, tty]);
  useEffect(() => {
    const t = termRef.current;
    if (!t) return;
    t.options.disableStdin = !interactive;
    t.options.cursorBlink = interactive;
    if (shown && interactive) t.focus();
  }, [shown, interactive]);
  return (
    <>
      <ErrorLine error={error} />
      <div class={`term-body ${big ? "big" : ""}`} ref={box} role="region" aria-label={label} data-testid="term-body" />
    </>
  );
}

/** Why a task did not answer, or null when it did (or is still going). */
function missing(t: Task): string | null {
  if (t.state === "lost") return t.reason === "agent offline" ? "offline" : "never answered (lost)";
  if (t.state === "skipped") return "skipped (max errors exceeded)";
  if (t.state === "cancelled" && !t.started_at) return "cancelled before it started";
  if (t.state === "queued") return "not dispatched";
  if (t.state === "dispatched" && !t.started_at) return "dispatched, never started";
  return null;
}

function detail(t: Task): string {
  const parts: string[] = [];
  if (t.reason && t.reason !== "exited") parts.push(t.reason);
  if (t.detail && !t.detail.startsWith("exited with code")) parts.push(t.detail);
  return parts.join(": ");
}

function Summary({ tasks }: { tasks: Task[] }) {
  const groups = new Map<string, string[]>();
  for (const t of tasks) {
    const why = missing(t);
    if (why) groups.set(why, [...(groups.get(why) ?? []), t.agent_name]);
  }
  return (
    <div class="panel run-summary" data-testid="summary">
      <h2>Summary</h2>
      {groups.size > 0 && (
        <div class="notice" data-testid="not-answered">
          <b>Did not answer:</b>
          <ul>
            {[...groups].map(([why, names]) => (
              <li>
                {why}: {names.join(", ")}
              </li>
            ))}
          </ul>
        </div>
      )}
      <table>
        <thead>
          <tr>
            <th>Machine</th>
            <th>State</th>
            <th>Exit</th>
            <th>Duration</th>
            <th>Reason</th>
            <th>Output</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((t) => (
            <tr data-machine={t.agent_name}>
              <td>
                <a href={`/machines/${seg(t.agent_name)}`}>{t.agent_name}</a>
              </td>
              <td>
                <Badge state={t.state} />
              </td>
              <td class="mono">{t.exit_code !== null ? t.exit_code : t.signal !== null ? `signal ${t.signal}` : "—"}</td>
              <td>{t.started_at && t.finished_at ? fmtDuration(t.finished_at - t.started_at) : "—"}</td>
              <td>{detail(t) || (isFinal(t.state) ? "" : "—")}</td>
              <td>
                <a href={`/tasks/${seg(t.id)}`}>task</a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export const routes: Route[] = [
  { pattern: "/run", view: RunPage },
  { pattern: "/runs/:id", view: RunView },
];
