// Workflows and jobs: the definitions (list, apply, delete), a definition's page (its text, its
// graph, a form to run it, its recent runs) and a workflow run's live view (the graph coloured
// by each step's state, each step's attempt, tasks and outputs, cancel).
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, del, get, post, seg } from "../api";
import { Dag, type DagNode } from "../components/dag";
import { navigate } from "../router";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import type { Run, Task } from "../types";
import { Badge, ErrorLine, fmtAgo, fmtDuration, fmtTime, useLoad, useTitle } from "../util";
import { SelectorInput } from "./fleet";
import "./workflows.css";

type DefKind = "job" | "workflow";
type StepState = "pending" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";
type FlowRunState = "running" | "succeeded" | "failed" | "cancelled";

interface ParamDef {
  type?: "string" | "int" | "bool" | "choice" | "secret";
  default?: unknown;
  required?: boolean;
  choices?: string[];
  description?: string;
}

/** A step (or a job) as written, as the server checked it. */
interface StepDef {
  id?: string;
  name?: string;
  needs?: string[];
  if?: string;
  targets?: string[];
  retries?: number | { count: number };
  [k: string]: unknown;
}

interface WorkflowDef extends StepDef {
  name: string;
  description?: string;
  params?: Record<string, ParamDef>;
  steps?: StepDef[];
  on_failure?: StepDef[];
  always?: StepDef[];
}

interface Definition {
  kind: DefKind;
  name: string;
  version: number;
  description: string;
  changed: boolean;
  created_at: number;
  created_by: string;
  definition: WorkflowDef;
  source: string;
  graph?: string;
}

interface FlowStep {
  id: string;
  kind: string;
  group: string;
  needs?: string[];
  state: StepState;
  attempt: number;
  run_id?: string;
  outputs: {
    outputs?: Record<string, unknown>;
    condition?: boolean | null;
    machines?: Record<string, { state: string; exit_code?: number | null; outputs?: Record<string, string>; condition?: boolean | null }>;
    events?: unknown[];
  };
  output?: string;
  detail?: string;
  started_at?: number;
  finished_at?: number;
  /** Every attempt, first to last (empty before the first). */
  attempts?: StepAttempt[];
}

interface StepAttempt {
  attempt: number;
  /** The run it ran (steps on machines). */
  run_id?: string;
  /** The child workflow run it ran (`workflow` steps). */
  workflow_run_id?: string;
  state: StepState;
  detail?: string;
  started_at: number;
  finished_at: number | null;
}

interface FlowRun {
  id: string;
  kind: DefKind;
  name: string;
  version: number;
  state: FlowRunState;
  params: Record<string, unknown>;
  secret_params?: string[];
  targets?: string[];
  created_by: string;
  created_at: number;
  finished_at: number | null;
  cancel_requested: boolean;
  parent?: string;
  steps?: FlowStep[];
  summary?: string;
}

const base = (k: DefKind) => (k === "job" ? "/api/v1/jobs" : "/api/v1/workflows");
const page = (k: DefKind) => (k === "job" ? "/jobs" : "/workflows");
const defHref = (k: DefKind, name: string) => `${page(k)}/${seg(name)}`;
const runHref = (id: string) => `/workflow-runs/${seg(id)}`;

const ACTIONS: [string, string][] = [
  ["run", "command"],
  ["script", "script"],
  ["uses", "uses"],
  ["http", "http"],
  ["notify", "notify"],
  ["workflow", "workflow"],
  ["langflow", "langflow"],
];

/** What a step or job does: command, script, uses, http, notify, workflow, langflow. */
function actionKind(s: StepDef): string {
  return ACTIONS.find(([k]) => s[k] !== undefined && s[k] !== null)?.[1] ?? "?";
}

/** A value shown as text: strings as they are, the rest as JSON. */
function show(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === undefined) return "";
  return JSON.stringify(v);
}

function what(d: Definition): string {
  if (d.kind === "workflow") {
    const n = d.definition.steps?.length ?? 0;
    return `${n} step${n === 1 ? "" : "s"}`;
  }
  return actionKind(d.definition);
}

/** The graph of a definition: a workflow's steps, or a job's one action (`main`). */
function defNodes(d: Definition): DagNode[] {
  const def = d.definition;
  if (d.kind === "job") return [{ id: "main", kind: actionKind(def), group: "steps", needs: [] }];
  const nodes: DagNode[] = [];
  for (const group of ["steps", "on_failure", "always"] as const) {
    for (const s of def[group] ?? []) {
      nodes.push({ id: String(s.id ?? "?"), kind: actionKind(s), group, needs: s.needs ?? [], condition: s.if });
    }
  }
  return nodes;
}

function stepsOf(d: Definition | undefined): Map<string, StepDef> {
  const m = new Map<string, StepDef>();
  if (!d) return m;
  if (d.kind === "job") m.set("main", d.definition);
  else for (const g of ["steps", "on_failure", "always"] as const) for (const s of d.definition[g] ?? []) m.set(String(s.id), s);
  return m;
}

const retriesOf = (s: StepDef | undefined) =>
  s?.retries === undefined ? 0 : typeof s.retries === "number" ? s.retries : (s.retries.count ?? 0);

function took(a: number | null | undefined, b: number | null | undefined): string {
  return a && b ? fmtDuration(Math.max(0, b - a)) : "";
}

/* ------------------------------------------------------------------------------------------ */
/* Lists                                                                                       */

function Tabs({ at }: { at: "workflows" | "jobs" | "runs" }) {
  const tab = (href: string, label: string, key: string) => (
    <a href={href} class={`button${at === key ? " primary" : ""}`} aria-current={at === key ? "page" : undefined}>
      {label}
    </a>
  );
  return (
    <nav class="tabs" aria-label="Workflows, jobs and runs">
      {tab("/workflows", "Workflows", "workflows")}
      {tab("/jobs", "Jobs", "jobs")}
      {tab("/workflow-runs", "Runs", "runs")}
    </nav>
  );
}

function ApplyForm({ kind, onApplied }: { kind: DefKind; onApplied: () => void }) {
  const [source, setSource] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<Definition | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    setBusy(true);
    try {
      const d = await post<Definition>(base(kind), { source });
      setDone(d);
      onApplied();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="apply-form">
      <label for="def-source">Apply a {kind} (YAML or JSON)</label>
      <textarea
        id="def-source"
        class="def-source"
        rows={10}
        spellcheck={false}
        value={source}
        placeholder={
          kind === "workflow"
            ? "name: hello\nparams:\n  who: {type: string, default: world}\nsteps:\n  - id: greet\n    run: echo hello ${{ params.who }}"
            : "name: restart\nparams:\n  svc: {type: string, required: true}\nrun: systemctl restart ${{ params.svc }}"
        }
        onInput={(e) => setSource((e.target as HTMLTextAreaElement).value)}
      />
      <div class="row" style={{ marginTop: "8px" }}>
        <button type="submit" disabled={busy || !source.trim()}>
          Apply
        </button>
        {done && (
          <span role="status" data-testid="applied">
            {done.kind} <a href={defHref(done.kind, done.name)}>{done.name}</a>{" "}
            {done.changed ? `version ${done.version}` : `unchanged (version ${done.version})`}
          </span>
        )}
      </div>
      {error && <ErrorLine error={error} />}
    </form>
  );
}

function DeleteButton({ d, after }: { d: Definition; after: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const go = async () => {
    if (!confirm(`Delete ${d.kind} ${d.name} (every version)? Its runs keep their copy.`)) return;
    setError(null);
    try {
      await del(`${base(d.kind)}/${seg(d.name)}`);
      after();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };
  return (
    <>
      <button type="button" class="danger" aria-label={`Delete ${d.kind} ${d.name}`} onClick={go}>
        Delete
      </button>
      {error && <ErrorLine error={error} />}
    </>
  );
}

function DefinitionsPage({ kind }: { kind: DefKind }) {
  const me = useMe();
  const title = kind === "job" ? "Jobs" : "Workflows";
  useTitle(title);
  const list = useLoad((signal) => get<Definition[]>(base(kind), undefined, signal), [kind], 10000);
  const runs = useLoad((signal) => get<FlowRun[]>("/api/v1/workflow-runs", { limit: 200 }, signal), [kind], 5000);
  const last = useMemo(() => {
    const m = new Map<string, FlowRun>();
    for (const r of runs.data ?? []) if (r.kind === kind && !m.has(r.name)) m.set(r.name, r);
    return m;
  }, [runs.data, kind]);
  return (
    <section>
      <h1>{title}</h1>
      <Tabs at={kind === "job" ? "jobs" : "workflows"} />
      <p class="muted small">
        {kind === "workflow"
          ? "A workflow is steps in a graph; each step runs when the steps it needs have ended."
          : "A job is one named action with parameters, run by name or as a workflow step (uses:)."}
      </p>
      <ErrorLine error={list.error} />
      <ErrorLine error={runs.error} />
      <table data-testid={`${kind}-list`}>
        <thead>
          <tr>
            <th>Name</th>
            <th>Version</th>
            <th>Does</th>
            <th>Description</th>
            <th>Applied</th>
            <th>By</th>
            <th>Last run</th>
            {canRun(me) && <th aria-label="Actions" />}
          </tr>
        </thead>
        <tbody>
          {list.data?.length === 0 && (
            <tr>
              <td colSpan={8} class="muted">
                No {kind}s yet{canRun(me) ? ": apply one below." : "."}
              </td>
            </tr>
          )}
          {list.data?.map((d) => (
            <tr data-def={d.name}>
              <td>
                <a href={defHref(d.kind, d.name)}>{d.name}</a>
              </td>
              <td>{d.version}</td>
              <td>{what(d)}</td>
              <td>{d.description}</td>
              <td title={fmtTime(d.created_at)}>{fmtAgo(d.created_at)}</td>
              <td>{d.created_by}</td>
              <td>
                {last.get(d.name) ? (
                  <a href={runHref(last.get(d.name)!.id)} title={fmtTime(last.get(d.name)!.created_at)}>
                    <Badge state={last.get(d.name)!.state} /> {fmtAgo(last.get(d.name)!.created_at)}
                  </a>
                ) : (
                  <span class="muted">—</span>
                )}
              </td>
              {canRun(me) && (
                <td>
                  <DeleteButton d={d} after={list.reload} />
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {list.loading && !list.data && <p class="muted">Loading…</p>}
      {canRun(me) && (
        <>
          <h2>Apply</h2>
          <ApplyForm kind={kind} onApplied={list.reload} />
        </>
      )}
    </section>
  );
}

function RunsTable({ runs, showName = true }: { runs: FlowRun[]; showName?: boolean }) {
  return (
    <table data-testid="flow-runs">
      <thead>
        <tr>
          <th>Run</th>
          {showName && <th>Of</th>}
          <th>State</th>
          <th>Started</th>
          <th>Took</th>
          <th>By</th>
        </tr>
      </thead>
      <tbody>
        {runs.length === 0 && (
          <tr>
            <td colSpan={6} class="muted">
              No runs.
            </td>
          </tr>
        )}
        {runs.map((r) => (
          <tr data-run={r.id}>
            <td>
              <a href={runHref(r.id)} class="mono">
                {r.id.slice(0, 12)}
              </a>
            </td>
            {showName && (
              <td>
                {r.kind} <a href={defHref(r.kind, r.name)}>{r.name}</a> <span class="muted">v{r.version}</span>
              </td>
            )}
            <td>
              <Badge state={r.state} />
            </td>
            <td title={fmtTime(r.created_at)}>{fmtAgo(r.created_at)}</td>
            <td>{took(r.created_at, r.finished_at)}</td>
            <td>{r.created_by}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RunsPage({ query }: { query: URLSearchParams }) {
  useTitle("Workflow runs");
  const state = query.get("state") ?? "";
  const runs = useLoad((signal) => get<FlowRun[]>("/api/v1/workflow-runs", { limit: 100, state }, signal), [state], 3000);
  return (
    <section>
      <h1>Workflow runs</h1>
      <Tabs at="runs" />
      <div class="row" style={{ marginBottom: "8px" }}>
        <label for="runs-state">State</label>
        <select
          id="runs-state"
          value={state}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            navigate(v ? `/workflow-runs?state=${v}` : "/workflow-runs", true);
          }}
        >
          <option value="">any</option>
          {["running", "succeeded", "failed", "cancelled"].map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
      </div>
      <ErrorLine error={runs.error} />
      {runs.data && <RunsTable runs={runs.data} />}
    </section>
  );
}

/* ------------------------------------------------------------------------------------------ */
/* A definition                                                                                */

/** Whether some step takes the run's targets (names none of its own). */
function takesTargets(d: Definition): boolean {
  if (d.kind === "job") return !d.definition.targets;
  const all = [...(d.definition.steps ?? []), ...(d.definition.on_failure ?? []), ...(d.definition.always ?? [])];
  return all.some((s) => !s.targets && ["command", "script", "uses", "langflow"].includes(actionKind(s)));
}

function initialValue(p: ParamDef): string | boolean {
  if (p.type === "bool") return p.default === true;
  if (p.type === "secret") return "";
  return p.default === undefined || p.default === null ? "" : show(p.default);
}

function RunForm({ d }: { d: Definition }) {
  const params = Object.entries(d.definition.params ?? {});
  const [values, setValues] = useState<Record<string, string | boolean>>(() =>
    Object.fromEntries(params.map(([k, p]) => [k, initialValue(p)])),
  );
  const [target, setTarget] = useState("");
  const [approve, setApprove] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const targets = takesTargets(d);
  const set = (k: string, v: string | boolean) => setValues((old) => ({ ...old, [k]: v }));
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    const body: Record<string, unknown> = {};
    for (const [k, p] of params) {
      const v = values[k];
      if (p.type === "bool") body[k] = v === true;
      else if (v !== "" && v !== undefined) body[k] = v;
    }
    try {
      const r = await post<FlowRun>(`${base(d.kind)}/${seg(d.name)}/runs`, {
        params: body,
        targets: targets && target.trim() ? [target.trim()] : [],
        approve,
      });
      navigate(runHref(r.id));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  };
  const defTargets = d.definition.targets;
  return (
    <form class="panel run-form" onSubmit={submit} data-testid="run-form">
      {params.length === 0 && <p class="muted small">No parameters.</p>}
      {params.map(([k, p]) => {
        const id = `param-${k}`;
        const v = values[k];
        const label = (
          <>
            {k}
            {p.required && <span class="req" aria-hidden="true"> *</span>} <span class="muted small">({p.type ?? "string"})</span>
          </>
        );
        return (
          <div class="param" data-param={k}>
            {p.type === "bool" ? (
              <label class="check">
                <input type="checkbox" checked={v === true} onChange={(e) => set(k, (e.target as HTMLInputElement).checked)} />{" "}
                {label}
              </label>
            ) : (
              <>
                <label for={id}>{label}</label>
                {p.type === "choice" ? (
                  <select id={id} value={String(v)} required={p.required} onChange={(e) => set(k, (e.target as HTMLSelectElement).value)}>
                    {(!p.required || p.default === undefined || p.default === null) && (
                      <option value="">{p.required ? "(choose)" : "(default)"}</option>
                    )}
                    {(p.choices ?? []).map((c) => (
                      <option value={c}>{c}</option>
                    ))}
                  </select>
                ) : (
                  <input
                    id={id}
                    class="mono"
                    type={p.type === "int" ? "number" : p.type === "secret" ? "password" : "text"}
                    step={p.type === "int" ? 1 : undefined}
                    autoComplete={p.type === "secret" ? "new-password" : "off"}
                    required={p.required}
                    value={String(v)}
                    placeholder={p.default !== undefined && p.type !== "secret" ? `default: ${show(p.default)}` : ""}
                    onInput={(e) => set(k, (e.target as HTMLInputElement).value)}
                  />
                )}
              </>
            )}
            {p.description && <div class="muted small">{p.description}</div>}
          </div>
        );
      })}
      {targets && (
        <SelectorInput
          id="run-targets"
          label="Targets (for the steps that name none)"
          value={target}
          onInput={setTarget}
          placeholder={defTargets?.length ? `default: ${defTargets.join(" | ")}` : "empty: herd up's own agent"}
        />
      )}
      <label class="check">
        <input type="checkbox" checked={approve} onChange={(e) => setApprove((e.target as HTMLInputElement).checked)} /> Approve
        commands the command policy sends for approval
      </label>
      <div class="row" style={{ marginTop: "10px" }}>
        <button type="submit" disabled={busy}>
          Run
        </button>
      </div>
      {error && <ErrorLine error={error} />}
    </form>
  );
}

function DefinitionPage({ params, kind }: { params: Record<string, string>; kind: DefKind }) {
  const me = useMe();
  const name = params.name;
  useTitle(`${kind === "job" ? "Job" : "Workflow"} ${name}`);
  const d = useLoad((signal) => get<Definition>(`${base(kind)}/${seg(name)}`, undefined, signal), [kind, name]);
  const runs = useLoad(
    (signal) => get<FlowRun[]>("/api/v1/workflow-runs", { limit: 40, name }, signal),
    [kind, name],
    3000,
  );
  // A job and a workflow may share a name: the server narrows by name, this page by kind.
  const mine = useMemo(() => (runs.data ?? []).filter((r) => r.kind === kind).slice(0, 20), [runs.data, kind]);
  const def = d.data;
  return (
    <section>
      <p class="small">
        <a href={page(kind)}>← {kind === "job" ? "Jobs" : "Workflows"}</a>
      </p>
      <h1>
        {kind} <span class="mono">{name}</span>
      </h1>
      <ErrorLine error={d.error} />
      {def && (
        <>
          <div class="panel">
            <dl class="kv">
              <dt>Version</dt>
              <dd>{def.version}</dd>
              <dt>Applied</dt>
              <dd>
                {fmtTime(def.created_at)} by {def.created_by}
              </dd>
              {def.description && (
                <>
                  <dt>Description</dt>
                  <dd>{def.description}</dd>
                </>
              )}
              <dt>Does</dt>
              <dd>{what(def)}</dd>
            </dl>
            {canRun(me) && (
              <div class="row" style={{ marginTop: "10px" }}>
                <DeleteButton d={def} after={() => navigate(page(kind))} />
              </div>
            )}
          </div>
          <h2>Graph</h2>
          <div class="panel">
            <Dag nodes={defNodes(def)} label={`The steps of ${kind} ${def.name}`} />
          </div>
          {canRun(me) && (
            <>
              <h2>Run</h2>
              <RunForm d={def} />
            </>
          )}
          <h2>Recent runs</h2>
          <ErrorLine error={runs.error} />
          {runs.data && <RunsTable runs={mine} showName={false} />}
          <h2>Definition</h2>
          <pre class="def-text" data-testid="def-source">
            {def.source}
          </pre>
        </>
      )}
      {d.loading && !def && <p class="muted">Loading…</p>}
    </section>
  );
}

/* ------------------------------------------------------------------------------------------ */
/* A workflow run                                                                              */

type RunTasks = Run & { tasks: Task[] };

/** The run of one attempt of a step (or its child workflow run), with its tasks. */
function AttemptRun({ id, label, child, live, state }: { id: string; label: string; child: boolean; live: boolean; state?: StepState }) {
  const r = useLoad(
    (signal) => (child ? Promise.resolve(null) : get<RunTasks>(`/api/v1/runs/${seg(id)}`, undefined, signal)),
    [id, child, live],
    live ? 2000 : undefined,
  );
  if (child) {
    return (
      <div class="attempt" data-attempt={label} data-run={id}>
        <span class="muted small">{label}:</span> workflow run{" "}
        <a href={runHref(id)} class="mono">
          {id.slice(0, 12)}
        </a>{" "}
        {state && <Badge state={state} />}
      </div>
    );
  }
  return (
    <div class="attempt" data-attempt={label} data-run={id}>
      <span class="muted small">{label}:</span> run{" "}
      <a href={`/runs/${seg(id)}`} class="mono">
        {id.slice(0, 12)}
      </a>{" "}
      {state && <Badge state={state} />}
      <ErrorLine error={r.error} />
      {r.data && r.data.tasks.length > 0 && (
        <ul class="tasks">
          {r.data.tasks.map((t) => (
            <li data-task={t.id}>
              <a href={`/tasks/${seg(t.id)}`}>{t.agent_name}</a> <Badge state={t.state} />
              {t.exit_code !== null ? (
                <span class="muted small"> exit {t.exit_code}</span>
              ) : (
                t.detail && <span class="muted small"> {t.detail}</span>
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function KV({ data, testid }: { data: Record<string, unknown>; testid?: string }) {
  const entries = Object.entries(data);
  if (entries.length === 0) return null;
  return (
    <dl class="kv outputs" data-testid={testid}>
      {entries.map(([k, v]) => (
        <>
          <dt class="mono">{k}</dt>
          <dd>
            <code class="out-value">{show(v)}</code>
          </dd>
        </>
      ))}
    </dl>
  );
}

function StepPanel({ step, index, def }: { step: FlowStep; index: number; def?: StepDef }) {
  const outputs = step.outputs?.outputs ?? {};
  const machines = Object.entries(step.outputs?.machines ?? {});
  const tries = 1 + retriesOf(def);
  return (
    <div class={`panel step s-border-${step.state}`} id={`step-${index}`} data-step-panel={step.id}>
      <div class="row">
        <h3 class="mono">{step.id}</h3>
        <Badge state={step.state} />
        <span class="muted small">
          {step.kind}
          {step.group !== "steps" ? ` · ${step.group.replace("_", " ")}` : ""}
          {step.needs && step.needs.length > 0 ? ` · needs ${step.needs.join(", ")}` : ""}
        </span>
        <span class="grow" />
        <span class="small muted">
          {step.attempt > 0 ? `attempt ${step.attempt}${tries > 1 ? ` of ${tries}` : ""}` : "not started"}
          {step.started_at ? ` · ${took(step.started_at, step.finished_at ?? Date.now())}` : ""}
        </span>
      </div>
      {def?.if && (
        <p class="small">
          <span class="muted">if </span>
          <code>{def.if}</code>
          {step.outputs?.condition !== undefined && step.outputs?.condition !== null && (
            <span class="muted"> · helper condition {String(step.outputs.condition)}</span>
          )}
        </p>
      )}
      {step.detail && <p class={step.state === "failed" ? "error" : "muted"}>{step.detail}</p>}
      {(step.attempts ?? []).map((a) =>
        a.run_id || a.workflow_run_id ? (
          <AttemptRun
            id={(a.run_id ?? a.workflow_run_id)!}
            label={`attempt ${a.attempt}`}
            child={!!a.workflow_run_id}
            live={a.state === "running"}
            state={a.state}
          />
        ) : (
          <div class="attempt" data-attempt={`attempt ${a.attempt}`}>
            <span class="muted small">attempt {a.attempt}:</span> <Badge state={a.state} />
          </div>
        ),
      )}
      {step.run_id && !(step.attempts ?? []).some((a) => (a.run_id ?? a.workflow_run_id) === step.run_id) && (
        // A run recorded before herd kept every attempt: its current attempt only.
        <AttemptRun
          id={step.run_id}
          label={`attempt ${step.attempt}`}
          child={step.kind === "workflow"}
          live={step.state === "running" || step.state === "pending"}
        />
      )}
      {Object.keys(outputs).length > 0 && (
        <>
          <h4>Outputs</h4>
          <KV data={outputs} testid={`outputs-${step.id}`} />
        </>
      )}
      {machines.length > 1 && (
        <>
          <h4>Per machine</h4>
          <table class="small">
            <tbody>
              {machines.map(([m, r]) => (
                <tr>
                  <td>{m}</td>
                  <td>
                    <Badge state={r.state} />
                  </td>
                  <td>{r.exit_code ?? ""}</td>
                  <td>
                    <KV data={r.outputs ?? {}} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {step.output && (
        <>
          <h4>Answer</h4>
          <pre class="step-output">{step.output}</pre>
        </>
      )}
      {step.outputs?.events && step.outputs.events.length > 0 && (
        <>
          <h4>Events</h4>
          <pre class="step-output">{step.outputs.events.map((e) => show(e)).join("\n")}</pre>
        </>
      )}
    </div>
  );
}

function CancelButton({ run, after }: { run: FlowRun; after: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setError(null);
    setBusy(true);
    try {
      await post(`/api/v1/workflow-runs/${seg(run.id)}/cancel`);
      after();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" class="danger" disabled={busy || run.cancel_requested} onClick={go}>
        {run.cancel_requested ? "Cancelling…" : "Cancel"}
      </button>
      {error && <ErrorLine error={error} />}
    </>
  );
}

function RunPage({ params }: { params: Record<string, string> }) {
  const me = useMe();
  const id = params.id;
  const [running, setRunning] = useState(true);
  useEffect(() => setRunning(true), [id]);
  const r = useLoad(
    (signal) => get<FlowRun>(`/api/v1/workflow-runs/${seg(id)}`, undefined, signal),
    [id, running],
    running ? 1000 : undefined,
  );
  const run = r.data;
  useEffect(() => {
    if (run) setRunning(run.state === "running");
  }, [run?.state]);
  useTitle(run ? `${run.name} run ${id.slice(0, 8)}` : `Workflow run ${id.slice(0, 8)}`);
  const kind = run?.kind;
  const name = run?.name;
  const d = useLoad(
    (signal) => (kind && name ? get<Definition>(`${base(kind)}/${seg(name)}`, undefined, signal) : Promise.resolve(undefined)),
    [kind, name],
  );
  const defSteps = useMemo(() => (d.data && run && d.data.version === run.version ? stepsOf(d.data) : new Map<string, StepDef>()), [d.data, run?.version]);
  const nodes: DagNode[] = (run?.steps ?? []).map((s, i) => ({
    id: s.id,
    kind: s.kind,
    group: s.group,
    needs: s.needs ?? [],
    state: s.state,
    condition: defSteps.get(s.id)?.if,
    note: s.attempt > 1 ? `attempt ${s.attempt}` : undefined,
    href: `#step-${i}`,
  }));
  const params_ = Object.entries(run?.params ?? {});
  return (
    <section>
      <p class="small">
        <a href="/workflow-runs">← Workflow runs</a>
      </p>
      <h1>
        {run ? (
          <>
            {run.kind} <a href={defHref(run.kind, run.name)}>{run.name}</a> <span class="muted">v{run.version}</span> · run{" "}
            <span class="mono">{id.slice(0, 12)}</span>
          </>
        ) : (
          <>Workflow run {id}</>
        )}
      </h1>
      <ErrorLine error={r.error} />
      {run && (
        <>
          <div class="panel">
            <div class="row">
              <span data-testid="run-state">
                <Badge state={run.state} />
              </span>
              {run.cancel_requested && run.state === "running" && <span class="muted">cancel requested</span>}
              <span class="grow" />
              {canRun(me) && run.state === "running" && <CancelButton run={run} after={r.reload} />}
            </div>
            <dl class="kv" style={{ marginTop: "10px" }}>
              <dt>Started</dt>
              <dd>
                {fmtTime(run.created_at)} by {run.created_by}
              </dd>
              <dt>Took</dt>
              <dd>{run.finished_at ? took(run.created_at, run.finished_at) : `${took(run.created_at, Date.now())} so far`}</dd>
              {run.targets && run.targets.length > 0 && (
                <>
                  <dt>Targets</dt>
                  <dd class="mono">{run.targets.join(" | ")}</dd>
                </>
              )}
              {run.name === "ask" && run.version === 0 && (
                <>
                  <dt>Plan</dt>
                  <dd>
                    <a href={`/ask/${encodeURIComponent(run.id)}`}>a herd ask plan: its request, reviews and judgements</a>
                  </dd>
                </>
              )}
              {run.parent && (
                <>
                  <dt>Step of</dt>
                  <dd>
                    <a href={runHref(run.parent.split("/")[0])} class="mono">
                      {run.parent}
                    </a>
                  </dd>
                </>
              )}
              {params_.length > 0 && (
                <>
                  <dt>Parameters</dt>
                  <dd>
                    <KV
                      data={Object.fromEntries(
                        params_.map(([k, v]) => [k, run.secret_params?.includes(k) ? "***" : v]),
                      )}
                      testid="run-params"
                    />
                  </dd>
                </>
              )}
            </dl>
          </div>
          {run.summary && (
            <>
              <h2>Summary</h2>
              <pre class="panel" data-testid="run-summary">
                {run.summary}
              </pre>
            </>
          )}
          <h2>Graph</h2>
          <div class="panel">
            <Dag nodes={nodes} label={`The steps of run ${id}, coloured by state`} />
            <p class="legend small muted">
              {(["pending", "running", "succeeded", "failed", "skipped", "cancelled"] as const).map((s) => (
                <Badge state={s} />
              ))}
            </p>
          </div>
          <h2>Steps</h2>
          {(run.steps ?? []).map((s, i) => (
            <StepPanel step={s} index={i} def={defSteps.get(s.id)} />
          ))}
        </>
      )}
      {r.loading && !run && <p class="muted">Loading…</p>}
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/workflows", view: () => <DefinitionsPage kind="workflow" /> },
  { pattern: "/jobs", view: () => <DefinitionsPage kind="job" /> },
  { pattern: "/workflow-runs", view: RunsPage },
  { pattern: "/workflows/:name", view: ({ params }) => <DefinitionPage params={params} kind="workflow" /> },
  { pattern: "/jobs/:name", view: ({ params }) => <DefinitionPage params={params} kind="job" /> },
  { pattern: "/workflow-runs/:id", view: RunPage },
];
