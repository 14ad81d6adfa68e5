// LangFlow flows: the LangFlow servers herd knows (sources: added with a URL and an API key,
// which is kept encrypted and never shown again; synced; removed) and the flows their syncs
// found. A flow's page: its inputs, outputs, components and tweakable parameters, and a form
// that runs it (input text, tweaks as a JSON object) and shows the answer's text as text,
// with a link to the run's log.
import { useEffect, useRef, useState } from "preact/hooks";
import { del, get, post, seg, text } from "../api";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import type { Run, Task } from "../types";
import { Badge, ErrorLine, fmtAgo, fmtTime, useLoad, useTitle } from "../util";
import { SelectorInput } from "./fleet";
import type { FlowComponent, LfFlow, LfSource, SyncReport } from "../components/sched-types";
import { tweaksOf } from "../components/sched-types";
import "./flows.css";

const flowHref = (f: LfFlow) => `/flows/${seg(f.source)}/${seg(f.id)}`;

function syncLine(r: SyncReport): string {
  if (r.error) return r.error;
  return `added ${r.added}, updated ${r.updated}, removed ${r.removed}, unchanged ${r.unchanged}`;
}

function AddSource({ onAdded }: { onAdded: () => void }) {
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [added, setAdded] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setAdded(null);
    try {
      const s = await post<LfSource>("/api/v1/langflow/sources", { name: name.trim(), url: url.trim(), api_key: key });
      // The key is a secret: it leaves the form once sent and is never shown again.
      setKey("");
      setName("");
      setUrl("");
      setAdded(`source ${s.name} added: ${s.flows} flow${s.flows === 1 ? "" : "s"} found`);
      onAdded();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel flows-add" onSubmit={submit} aria-label="Add a LangFlow source">
      <h2>Add a LangFlow source</h2>
      <div class="row flows-add-fields">
        <div>
          <label for="src-name">Name</label>
          <input
            id="src-name"
            class="mono"
            value={name}
            required
            placeholder="lab"
            spellcheck={false}
            autoComplete="off"
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="grow">
          <label for="src-url">URL</label>
          <input
            id="src-url"
            class="mono wide"
            type="url"
            value={url}
            required
            placeholder="http://127.0.0.1:7860"
            spellcheck={false}
            autoComplete="off"
            onInput={(e) => setUrl((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="grow">
          <label for="src-key">API key</label>
          <input
            id="src-key"
            class="mono wide"
            type="password"
            value={key}
            required
            placeholder="sk-…"
            autoComplete="new-password"
            spellcheck={false}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          />
        </div>
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Add source"}
        </button>
      </div>
      <p class="muted small">herd checks the URL and key at once; the key is kept encrypted and never shown again.</p>
      <ErrorLine error={error} />
      {added && (
        <p class="ok-line" role="status">
          {added}
        </p>
      )}
    </form>
  );
}

function SourceRow({
  s,
  report,
  onSynced,
  onRemoved,
  write,
}: {
  s: LfSource;
  report?: SyncReport;
  onSynced: (r: SyncReport[]) => void;
  onRemoved: () => void;
  write: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const act = async (f: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <tr data-source={s.name}>
      <td class="mono">{s.name}</td>
      <td class="mono small">{s.url}</td>
      <td>{s.flows}</td>
      <td title={fmtTime(s.synced_at)}>{s.synced_at ? fmtAgo(s.synced_at) : "never"}</td>
      <td class="small">
        {fmtTime(s.created_at)} by {s.created_by}
      </td>
      <td data-testid="sync-report">
        {report && (
          <span class={report.error ? "error-text" : ""} role="status">
            {syncLine(report)}
          </span>
        )}
        <ErrorLine error={error} />
      </td>
      {write && (
        <td>
          <div class="row">
            <button
              type="button"
              disabled={busy}
              aria-label={`Sync ${s.name}`}
              onClick={() =>
                act(async () => onSynced(await post<SyncReport[]>(`/api/v1/langflow/sync?source=${seg(s.name)}`)))
              }
            >
              Sync
            </button>
            {!confirm ? (
              <button type="button" class="danger" disabled={busy} aria-label={`Remove ${s.name}`} onClick={() => setConfirm(true)}>
                Remove
              </button>
            ) : (
              <span class="row" role="group" aria-label={`Confirm removing ${s.name}`}>
                <span>Remove it and its flows?</span>
                <button
                  type="button"
                  class="danger"
                  disabled={busy}
                  onClick={() =>
                    act(async () => {
                      await del(`/api/v1/langflow/sources/${seg(s.name)}`);
                      onRemoved();
                    })
                  }
                >
                  Yes, remove
                </button>
                <button type="button" onClick={() => setConfirm(false)}>
                  Keep
                </button>
              </span>
            )}
          </div>
        </td>
      )}
    </tr>
  );
}

function FlowsPage() {
  useTitle("Flows");
  const me = useMe();
  const write = canRun(me);
  const sources = useLoad((signal) => get<LfSource[]>("/api/v1/langflow/sources", undefined, signal), [], 10000);
  const flows = useLoad((signal) => get<LfFlow[]>("/api/v1/langflow/flows", undefined, signal), [], 10000);
  const [reports, setReports] = useState<Record<string, SyncReport>>({});
  const [syncError, setSyncError] = useState<unknown>(null);
  const [syncing, setSyncing] = useState(false);
  const reload = () => {
    sources.reload();
    flows.reload();
  };
  const synced = (rs: SyncReport[]) => {
    setReports((o) => ({ ...o, ...Object.fromEntries(rs.map((r) => [r.source, r])) }));
    reload();
  };
  const syncAll = async () => {
    setSyncing(true);
    setSyncError(null);
    try {
      synced(await post<SyncReport[]>("/api/v1/langflow/sync"));
    } catch (e) {
      setSyncError(e);
    } finally {
      setSyncing(false);
    }
  };
  const bySource = new Map<string, LfFlow[]>();
  for (const f of flows.data ?? []) {
    const l = bySource.get(f.source) ?? [];
    l.push(f);
    bySource.set(f.source, l);
  }
  const list = sources.data ?? [];
  return (
    <section>
      <div class="row flows-head">
        <h1 class="grow">LangFlow flows</h1>
        {write && list.length > 0 && (
          <button type="button" disabled={syncing} onClick={syncAll}>
            {syncing ? "Syncing…" : "Sync every source"}
          </button>
        )}
      </div>
      <ErrorLine error={syncError} />
      {write && <AddSource onAdded={reload} />}
      <h2>Sources</h2>
      <ErrorLine error={sources.error} />
      {sources.data && list.length === 0 && <p class="muted">No LangFlow source yet.</p>}
      {list.length > 0 && (
        <table data-testid="sources">
          <thead>
            <tr>
              <th>Name</th>
              <th>URL</th>
              <th>Flows</th>
              <th>Synced</th>
              <th>Added</th>
              <th>Last sync</th>
              {write && <th>Actions</th>}
            </tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <SourceRow
                key={s.name}
                s={s}
                report={reports[s.name]}
                write={write}
                onSynced={synced}
                onRemoved={reload}
              />
            ))}
          </tbody>
        </table>
      )}
      <h2>Flows</h2>
      <ErrorLine error={flows.error} />
      {flows.data && flows.data.length === 0 && list.length > 0 && <p class="muted">No flows found yet: sync a source.</p>}
      {[...bySource.entries()].map(([source, fl]) => (
        <div class="panel" data-flows-of={source}>
          <h3>
            <span class="muted">source</span> <span class="mono">{source}</span>
          </h3>
          <table>
            <thead>
              <tr>
                <th>Flow</th>
                <th>Description</th>
                <th>Endpoint</th>
                <th>Updated upstream</th>
                <th>State</th>
              </tr>
            </thead>
            <tbody>
              {fl.map((f) => (
                <tr data-flow={f.name}>
                  <td>
                    <a href={flowHref(f)}>{f.name}</a>
                  </td>
                  <td class="small">{f.description}</td>
                  <td class="mono small">{f.endpoint_name ?? ""}</td>
                  <td class="small">{f.updated_at ?? ""}</td>
                  <td>
                    {f.removed_at ? (
                      <span title={`not found upstream since ${fmtTime(f.removed_at)}`}>
                        <Badge state="removed" />
                      </span>
                    ) : (
                      <Badge state="active" />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </section>
  );
}

function Components({ title, list }: { title: string; list: FlowComponent[] }) {
  if (!list.length) return null;
  return (
    <>
      <h3>{title}</h3>
      <table class="flow-components">
        <thead>
          <tr>
            <th>Component (tweak key)</th>
            <th>Type</th>
            <th>Parameters</th>
          </tr>
        </thead>
        <tbody>
          {list.map((c) => (
            <tr>
              <td>
                <span class="mono">{c.id}</span>
                <div class="small muted">{c.display_name}</div>
              </td>
              <td class="mono small">{c.kind}</td>
              <td>
                <div class="labels">
                  {c.params.map((p) => (
                    <span
                      class={`label${p.advanced ? " adv" : ""}`}
                      title={`${p.display_name} (${p.kind})${p.value != null ? ` = ${p.value}` : ""}${p.advanced ? ", advanced" : ""}`}
                    >
                      {p.name}
                    </span>
                  ))}
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

interface RunResult {
  run: Run;
  task?: Task;
  text?: string;
  why?: string;
}

function RunForm({ flow }: { flow: LfFlow }) {
  const [input, setInput] = useState("");
  const [tweaks, setTweaks] = useState("");
  const [session, setSession] = useState("");
  const [selector, setSelector] = useState("");
  const [timeout, setTimeout_] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<RunResult | null>(null);
  // Following a run stops when the page goes.
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let tw: string[];
    try {
      tw = tweaksOf(tweaks);
    } catch (err) {
      setError(err);
      return;
    }
    setBusy(true);
    setResult(null);
    try {
      const run = await post<Run>(`/api/v1/langflow/flows/${seg(flow.id)}/runs`, {
        input,
        tweaks: tw,
        session: session.trim() || null,
        targets: selector.trim() ? [selector.trim()] : [],
        timeout: timeout.trim() || null,
        source: flow.source,
      });
      setResult({ run });
      // Follow the run until it ends; its task's output `text` is the answer.
      let r: Run & { tasks: Task[] };
      for (;;) {
        r = await get<Run & { tasks: Task[] }>(`/api/v1/runs/${seg(run.id)}`);
        if (r.state !== "running" || !alive.current) break;
        await new Promise((res) => setTimeout(res, 400));
      }
      const task = r.tasks[0];
      let why: string | undefined;
      if (r.state !== "succeeded" && task) {
        // The task's own line says what failed.
        try {
          const out = await text(`/api/v1/tasks/${seg(task.id)}/output`);
          why = out
            .split("\n")
            .reverse()
            .find((l) => l.startsWith("herd: langflow: "))
            ?.slice("herd: ".length);
        } catch {
          /* the state says enough */
        }
        why ??= `the run ended ${task.state}${task.reason ? ` (${task.reason})` : ""}`;
      }
      setResult({ run: r, task, text: task?.outputs?.text, why });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="panel" onSubmit={submit} aria-label="Run the flow">
      <h2>Run</h2>
      <label for="flow-input">Input text</label>
      <textarea id="flow-input" rows={3} class="wide" value={input} onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)} />
      <label for="flow-tweaks">Tweaks (a JSON object)</label>
      <textarea
        id="flow-tweaks"
        rows={3}
        class="wide"
        spellcheck={false}
        value={tweaks}
        placeholder={'{"ChatOutput.sender_name": "ops"}   or   {"ChatOutput": {"sender_name": "ops"}}'}
        onInput={(e) => setTweaks((e.target as HTMLTextAreaElement).value)}
      />
      <div class="row flows-run-opts">
        <div>
          <label for="flow-session">Session (optional)</label>
          <input
            id="flow-session"
            class="mono"
            value={session}
            autoComplete="off"
            onInput={(e) => setSession((e.target as HTMLInputElement).value)}
          />
        </div>
        <div>
          <label for="flow-timeout">Timeout (default 5m)</label>
          <input
            id="flow-timeout"
            class="mono"
            value={timeout}
            placeholder="2m"
            autoComplete="off"
            onInput={(e) => setTimeout_((e.target as HTMLInputElement).value)}
          />
        </div>
        <SelectorInput
          id="flow-selector"
          label="Called from (selector; empty: the server's own agent)"
          placeholder="(empty: the server's own agent)"
          value={selector}
          onInput={setSelector}
        />
      </div>
      <ErrorLine error={error} />
      <div class="row">
        <button type="submit" disabled={busy || !!flow.removed_at}>
          {busy ? "Running…" : "Run flow"}
        </button>
        {flow.removed_at && <span class="muted">Removed upstream: it cannot run.</span>}
      </div>
      {result && (
        <div class="flow-result" data-testid="flow-result">
          <div class="row">
            <Badge state={result.run.state} />
            <a href={`/runs/${seg(result.run.id)}`}>run {result.run.id.slice(0, 10)} (its log)</a>
            {result.task && <a href={`/tasks/${seg(result.task.id)}`}>task output</a>}
          </div>
          {result.why && (
            <p class="error" role="alert">
              {result.why}
            </p>
          )}
          {result.text !== undefined && (
            <>
              <h3>Answer</h3>
              <pre data-testid="flow-answer">{result.text}</pre>
            </>
          )}
          {result.run.state === "succeeded" && result.text === undefined && (
            <p class="muted">The answer has no text — the run's log shows all of it.</p>
          )}
        </div>
      )}
    </form>
  );
}

function FlowPage({ params }: { params: Record<string, string>; query: URLSearchParams }) {
  const me = useMe();
  const one = useLoad(
    (signal) => get<LfFlow>(`/api/v1/langflow/flows/${seg(params.flow)}`, { source: params.source }, signal),
    [params.source, params.flow],
  );
  const f = one.data;
  useTitle(f ? `Flow ${f.name}` : "Flow");
  return (
    <section>
      <p class="muted small">
        <a href="/flows">Flows</a> / <span class="mono">{params.source}</span> /
      </p>
      <h1 class="flows-title">
        Flow <span class="mono">{f?.name ?? params.flow}</span>
      </h1>
      <ErrorLine error={one.error} />
      {f && (
        <div class="flow-cols">
          <div>
            <div class="panel" data-testid="flow-details">
              {f.description && <p>{f.description}</p>}
              <dl class="kv">
                <dt>Source</dt>
                <dd class="mono">{f.source}</dd>
                <dt>Id</dt>
                <dd class="mono">{f.id}</dd>
                <dt>Endpoint</dt>
                <dd class="mono">{f.endpoint_name ?? "—"}</dd>
                <dt>Updated upstream</dt>
                <dd>{f.updated_at ?? "—"}</dd>
                <dt>Synced</dt>
                <dd>{fmtTime(f.synced_at)}</dd>
                {f.removed_at && (
                  <>
                    <dt>Removed upstream</dt>
                    <dd>{fmtTime(f.removed_at)}</dd>
                  </>
                )}
              </dl>
              <p class="muted small">
                Schedule it: <a href="/schedules?new=1">a new schedule</a> with “LangFlow flow”.
              </p>
            </div>
            {canRun(me) && <RunForm flow={f} />}
          </div>
          <div>
            <Components title="Inputs" list={f.inputs} />
            <Components title="Outputs" list={f.outputs} />
            <Components title="Components" list={f.components} />
          </div>
        </div>
      )}
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/flows", view: FlowsPage },
  { pattern: "/flows/:source/:flow", view: FlowPage },
];
