// History: past and current runs (`/runs`) and tasks (`/tasks`), newest first, filtered by
// state, machine, time and key (filters in the URL); one task's facts and output (`/tasks/:id`).
import { useState } from "preact/hooks";
import { get, post, seg } from "../api";
import { Filters, apiFilters } from "../components/history-filters";
import { FINAL_TASK, TaskOutput } from "../components/history-output";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import type { Run, Task } from "../types";
import { Badge, ErrorLine, fmtAgo, fmtDuration, fmtTime, useDebounced, useLoad, useTitle } from "../util";
import "./history.css";

const RUN_STATES = ["running", "succeeded", "failed", "cancelled"];
const TASK_STATES = ["queued", "dispatched", "running", "succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"];
const PAGE = 50;

/** The URL's filters as one string, settled for a moment (typing does not fire a load per key). */
function useFilterKey(query: URLSearchParams): string {
  const p = new URLSearchParams();
  for (const k of ["state", "machine", "since", "who"]) {
    const v = query.get(k);
    if (v) p.set(k, v);
  }
  return useDebounced(p.toString(), 250);
}

/** The Runs / Tasks switch, carrying the filters (a state only where it exists). */
function Tabs({ at, query }: { at: "runs" | "tasks"; query: URLSearchParams }) {
  const link = (to: "runs" | "tasks") => {
    const p = new URLSearchParams();
    for (const k of ["state", "machine", "since", "who"]) {
      const v = query.get(k);
      if (!v) continue;
      if (k === "state" && !(to === "runs" ? RUN_STATES : TASK_STATES).includes(v)) continue;
      p.set(k, v);
    }
    const s = p.toString();
    return `/${to}${s ? `?${s}` : ""}`;
  };
  return (
    <nav class="htabs" aria-label="History views">
      <a href={link("runs")} class={at === "runs" ? "active" : ""} aria-current={at === "runs" ? "page" : undefined}>
        Runs
      </a>
      <a href={link("tasks")} class={at === "tasks" ? "active" : ""} aria-current={at === "tasks" ? "page" : undefined}>
        Tasks
      </a>
    </nav>
  );
}

function More({ shown, limit, onMore }: { shown: number; limit: number; onMore: () => void }) {
  if (shown < limit) return null;
  return (
    <p>
      <button type="button" onClick={onMore}>
        Show more
      </button>
    </p>
  );
}

function took(start: number | null, end: number | null, now = Date.now()): string {
  if (!start) return "—";
  return fmtDuration((end ?? now) - start);
}

function RunsPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("History");
  const key = useFilterKey(query);
  const [limit, setLimit] = useState(PAGE);
  const runs = useLoad(
    (signal) => get<Run[]>("/api/v1/runs", { ...apiFilters(new URLSearchParams(key), true), limit }, signal),
    [key, limit],
    5000,
  );
  const list = runs.data ?? [];
  return (
    <section>
      <h1>History</h1>
      <Tabs at="runs" query={query} />
      <Filters query={query} states={RUN_STATES} idPrefix="runs" />
      <ErrorLine error={runs.error} />
      <div class="panel hlist">
        <table data-testid="runs">
          <thead>
            <tr>
              <th>State</th>
              <th>Command</th>
              <th>Machines</th>
              <th>By</th>
              <th>Started</th>
              <th>Took</th>
            </tr>
          </thead>
          <tbody>
            {list.map((r) => (
              <tr data-run={r.id}>
                <td>
                  <Badge state={r.state} />
                </td>
                <td class="hcmd">
                  <a href={`/runs/${seg(r.id)}`} class="mono" title={r.command}>
                    {r.command || "(no command)"}
                  </a>
                </td>
                <td class="mono small">{r.selector || "—"}</td>
                <td class="small">{r.created_by}</td>
                <td class="small" title={fmtTime(r.created_at)}>
                  {fmtAgo(r.created_at)}
                </td>
                <td class="small">{took(r.created_at, r.finished_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!runs.loading && list.length === 0 && !runs.error && <p class="muted">No runs match.</p>}
        {runs.loading && !runs.data && <p class="muted">loading…</p>}
        <More shown={list.length} limit={limit} onMore={() => setLimit((l) => l + 100)} />
      </div>
    </section>
  );
}

function TasksPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Tasks");
  const key = useFilterKey(query);
  const [limit, setLimit] = useState(PAGE);
  const tasks = useLoad(
    (signal) => get<Task[]>("/api/v1/tasks", { ...apiFilters(new URLSearchParams(key), true), limit }, signal),
    [key, limit],
    5000,
  );
  const list = tasks.data ?? [];
  return (
    <section>
      <h1>History</h1>
      <Tabs at="tasks" query={query} />
      <Filters query={query} states={TASK_STATES} idPrefix="tasks" />
      <ErrorLine error={tasks.error} />
      <div class="panel hlist">
        <table data-testid="tasks">
          <thead>
            <tr>
              <th>State</th>
              <th>Task</th>
              <th>Machine</th>
              <th>Run</th>
              <th>Exit</th>
              <th>Created</th>
              <th>Took</th>
            </tr>
          </thead>
          <tbody>
            {list.map((t) => (
              <tr data-task={t.id}>
                <td>
                  <Badge state={t.state} />
                </td>
                <td>
                  <a href={`/tasks/${seg(t.id)}`} class="mono">
                    {t.id}
                  </a>
                </td>
                <td>
                  <a href={`/machines/${seg(t.agent_name)}`}>{t.agent_name}</a>
                </td>
                <td>
                  <a href={`/runs/${seg(t.run_id)}`} class="mono small">
                    {t.run_id}
                  </a>
                </td>
                <td class="mono">{exitText(t)}</td>
                <td class="small" title={fmtTime(t.created_at)}>
                  {fmtAgo(t.created_at)}
                </td>
                <td class="small">{took(t.started_at, t.finished_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!tasks.loading && list.length === 0 && !tasks.error && <p class="muted">No tasks match.</p>}
        {tasks.loading && !tasks.data && <p class="muted">loading…</p>}
        <More shown={list.length} limit={limit} onMore={() => setLimit((l) => l + 100)} />
      </div>
    </section>
  );
}

function exitText(t: Task): string {
  if (t.exit_code !== null) return String(t.exit_code);
  if (t.signal !== null) return `signal ${t.signal}`;
  return "—";
}

function TaskPage({ params, query }: { params: Record<string, string>; query: URLSearchParams }) {
  const id = params.id;
  useTitle(`Task ${id}`);
  const me = useMe();
  const [cancelling, setCancelling] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [poll, setPoll] = useState(true);
  const task = useLoad(
    async (signal) => {
      const t = await get<Task>(`/api/v1/tasks/${seg(id)}`, undefined, signal);
      setPoll(!FINAL_TASK.has(t.state));
      return t;
    },
    [id, poll],
    poll ? 2000 : undefined,
  );
  const run = useLoad(
    (signal) => (task.data ? get<Run>(`/api/v1/runs/${seg(task.data.run_id)}`, undefined, signal) : Promise.resolve(undefined)),
    [task.data?.run_id],
  );
  const t = task.data;
  if (!t) {
    return (
      <section>
        <h1>Task {id}</h1>
        {task.error ? <ErrorLine error={task.error} /> : <p class="muted">loading…</p>}
        <a href="/tasks">All tasks</a>
      </section>
    );
  }
  const r = run.data;
  const sup = t.supervision;
  const outputs = Object.entries(t.outputs ?? {});
  const stream = query.get("stream") ?? "";
  return (
    <section>
      <p class="small">
        <a href="/tasks">Tasks</a> / <span class="mono">{t.id}</span>
      </p>
      <div class="row" style={{ justifyContent: "space-between" }}>
        <h1 class="row">
          <span>
            Task on <a href={`/machines/${seg(t.agent_name)}`}>{t.agent_name}</a>
          </span>
          <Badge state={t.state} />
        </h1>
        {canRun(me) && !FINAL_TASK.has(t.state) && (
          <button
            type="button"
            class="danger"
            disabled={cancelling}
            onClick={async () => {
              setCancelError(null);
              setCancelling(true);
              try {
                await post<Task>(`/api/v1/tasks/${seg(t.id)}/cancel`);
                task.reload();
              } catch (e) {
                setCancelError(e);
              } finally {
                setCancelling(false);
              }
            }}
          >
            Cancel task
          </button>
        )}
      </div>
      <ErrorLine error={task.error} />
      <ErrorLine error={cancelError} />
      {r && (
        <p class="hcmdline">
          <code class="mono">{r.command}</code>
        </p>
      )}
      <div class="panel">
        <dl class="kv htask-facts" data-testid="task-facts">
          <dt>Task</dt>
          <dd class="mono">{t.id}</dd>
          <dt>Run</dt>
          <dd>
            <a href={`/runs/${seg(t.run_id)}`} class="mono">
              {t.run_id}
            </a>
            {r && <span class="muted small"> by {r.created_by}</span>}
          </dd>
          <dt>Machine</dt>
          <dd>
            <a href={`/machines/${seg(t.agent_name)}`}>{t.agent_name}</a>
          </dd>
          <dt>State</dt>
          <dd>
            <Badge state={t.state} />
          </dd>
          <dt>Exit</dt>
          <dd class="mono">{exitText(t)}</dd>
          <dt>Created</dt>
          <dd>{fmtTime(t.created_at)}</dd>
          <dt>Started</dt>
          <dd>{fmtTime(t.started_at)}</dd>
          <dt>Finished</dt>
          <dd>{fmtTime(t.finished_at)}</dd>
          <dt>Took</dt>
          <dd>{took(t.started_at, t.finished_at)}</dd>
          {t.pid !== null && (
            <>
              <dt>PID</dt>
              <dd class="mono">{t.pid}</dd>
            </>
          )}
          {t.reason && (
            <>
              <dt>Reason</dt>
              <dd>{t.reason}</dd>
            </>
          )}
          {t.detail && (
            <>
              <dt>Detail</dt>
              <dd class="hpre">{t.detail}</dd>
            </>
          )}
          {sup && (
            <>
              <dt>Supervision</dt>
              <dd data-testid="supervision">
                <Badge state={sup.state} /> <span class="muted small">{sup.class}</span>
                {sup.reason && <div>{sup.reason}</div>}
                {sup.prompt && (
                  <div>
                    prompt: <code>{sup.prompt}</code>
                    {sup.secret && <span class="muted small"> (secret)</span>}
                  </div>
                )}
              </dd>
            </>
          )}
          {outputs.length > 0 && (
            <>
              <dt>Outputs</dt>
              <dd>
                {outputs.map(([k, v]) => (
                  <div class="mono small">
                    {k}={v}
                  </div>
                ))}
              </dd>
            </>
          )}
        </dl>
      </div>
      <div class="panel">
        <h2>Output</h2>
        <TaskOutput task={t} stream={stream} onTaskChange={task.reload} />
      </div>
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/runs", view: RunsPage },
  { pattern: "/tasks", view: TasksPage },
  { pattern: "/tasks/:id", view: TaskPage },
];
