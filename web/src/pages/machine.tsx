// One machine: state, facts, labels (editable by operators), recent tasks and alerts.
import { useState } from "preact/hooks";
import { ApiError, get, post, seg } from "../api";
import type { Route } from "../routes";
import { canRun, isAdmin, useMe } from "../session";
import type { Agent, Task } from "../types";
import { Badge, ErrorLine, Meter, fmtAgo, fmtBytes, fmtDuration, fmtTime, pct, useLoad, useTitle } from "../util";

interface Alert {
  id: string;
  rule: string;
  agent: string;
  metric: string;
  level: string;
  value: number;
  threshold: number;
  raised_at: number;
  cleared_at?: number;
}

const LABEL_RE = /^([A-Za-z0-9_.\-/]+)=(.*)$/;

function Labels({ agent, onChange }: { agent: Agent; onChange: (a: Agent) => void }) {
  const me = useMe();
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<string | null>(null);
  const edit = async (set: Record<string, string>, remove: string[]) => {
    setError(null);
    try {
      onChange(await post<Agent>(`/api/v1/agents/${seg(agent.name)}/labels`, { set, remove }));
      return true;
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
      return false;
    }
  };
  const add = async (e: Event) => {
    e.preventDefault();
    const m = LABEL_RE.exec(draft.trim());
    if (!m) {
      setError("write a label as key=value (keys of letters, digits, _ . - /)");
      return;
    }
    if (await edit({ [m[1]]: m[2] }, [])) setDraft("");
  };
  const entries = Object.entries(agent.labels);
  return (
    <div>
      <div class="labels" data-testid="labels">
        {entries.length === 0 && <span class="muted">no labels</span>}
        {entries.map(([k, v]) => (
          <span class="label" title={`from ${agent.label_sources[k] ?? "agent"}`}>
            {k}={v}
            {canRun(me) && (
              <button type="button" class="link" aria-label={`Remove label ${k}`} onClick={() => edit({}, [k])}>
                ×
              </button>
            )}
          </span>
        ))}
      </div>
      {Object.keys(agent.claims).length > 0 && (
        <p class="small notice">
          Claimed beyond its join token (matched by no selector until set):{" "}
          {Object.entries(agent.claims).map(([k, v]) => (
            <span class="label">
              {k}={v}
            </span>
          ))}
        </p>
      )}
      {canRun(me) && (
        <form class="row" onSubmit={add} style={{ marginTop: "8px" }}>
          <input
            aria-label="New label (key=value)"
            class="mono"
            placeholder="key=value"
            value={draft}
            onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          />
          <button type="submit">Set label</button>
        </form>
      )}
      <ErrorLine error={error} />
    </div>
  );
}

function MachinePage({ params }: { params: Record<string, string>; query: URLSearchParams }) {
  const name = params.name;
  useTitle(name);
  const me = useMe();
  const [override, setOverride] = useState<Agent | null>(null);
  const agent = useLoad((signal) => get<Agent>(`/api/v1/agents/${seg(name)}`, undefined, signal), [name], 5000);
  const tasks = useLoad(
    (signal) => get<Task[]>("/api/v1/tasks", { machine: name, limit: 20 }, signal),
    [name],
    5000,
  );
  const alerts = useLoad((signal) => get<Alert[]>("/api/v1/alerts", { all: true, limit: 200 }, signal), [name], 10000);
  // An edit's answer shows at once; the next load replaces it.
  const a = override ?? agent.data;
  const [revokeError, setRevokeError] = useState<unknown>(null);

  if (agent.error && !a) {
    return (
      <section>
        <h1>{name}</h1>
        <ErrorLine error={agent.error} />
        <a href="/fleet">Back to the fleet</a>
      </section>
    );
  }
  if (!a) return <p class="muted">loading…</p>;
  const f = a.facts;
  const m = a.metrics;
  const mine = (alerts.data ?? []).filter((x) => x.agent === a.name);
  return (
    <section>
      <div class="row" style={{ justifyContent: "space-between" }}>
        <h1>
          <span class={`dot ${a.online ? "on" : "off"}`} /> {a.name}{" "}
          {a.revoked_at ? <Badge state="revoked" /> : <Badge state={a.online ? "online" : "offline"} />}
        </h1>
        <div class="row">
          {canRun(me) && !a.revoked_at && (
            <a class="button primary" href={`/run?target=${encodeURIComponent(a.name)}`}>
              Run on {a.name}…
            </a>
          )}
          {isAdmin(me) && !a.revoked_at && (
            <button
              type="button"
              class="danger"
              onClick={async () => {
                if (!confirm(`Revoke ${a.name}? Its agent can no longer connect.`)) return;
                try {
                  await post<Agent>(`/api/v1/agents/${seg(a.name)}/revoke`);
                  agent.reload();
                } catch (e) {
                  setRevokeError(e);
                }
              }}
            >
              Revoke
            </button>
          )}
        </div>
      </div>
      <ErrorLine error={revokeError} />
      <div class="panel">
        <h2>Labels</h2>
        <Labels
          agent={a}
          onChange={(x) => {
            setOverride(x);
            setTimeout(() => {
              setOverride(null);
              agent.reload();
            }, 0);
          }}
        />
      </div>
      <div class="panel">
        <h2>Load</h2>
        {m ? (
          <dl class="kv">
            <dt>CPU</dt>
            <dd>
              <Meter value={m.cpu_percent} /> load {m.load1.toFixed(2)} {m.load5.toFixed(2)} {m.load15.toFixed(2)}
            </dd>
            <dt>Memory</dt>
            <dd>
              <Meter value={pct(m.memory_used_bytes, m.memory_total_bytes)} /> {fmtBytes(m.memory_used_bytes)} of{" "}
              {fmtBytes(m.memory_total_bytes)}
            </dd>
            <dt>Disk</dt>
            <dd>
              <Meter value={pct(m.disk_used_bytes, m.disk_total_bytes)} /> {fmtBytes(m.disk_used_bytes)} of{" "}
              {fmtBytes(m.disk_total_bytes)}
            </dd>
          </dl>
        ) : (
          <p class="muted">No heartbeat metrics yet.</p>
        )}
      </div>
      <div class="panel">
        <h2>Facts</h2>
        <dl class="kv" data-testid="facts">
          <dt>Agent id</dt>
          <dd class="mono">{a.id}</dd>
          <dt>Version</dt>
          <dd>{a.version}</dd>
          <dt>Hostname</dt>
          <dd>{f?.hostname}</dd>
          <dt>OS</dt>
          <dd>{[f?.os_name || f?.os, f?.os_version].filter(Boolean).join(" ")}</dd>
          <dt>Kernel</dt>
          <dd>{f?.kernel}</dd>
          <dt>Architecture</dt>
          <dd>{f?.arch}</dd>
          <dt>CPUs</dt>
          <dd>{f?.cpus}</dd>
          <dt>Memory</dt>
          <dd>{fmtBytes(f?.memory_bytes)}</dd>
          <dt>Addresses</dt>
          <dd class="mono">{(f?.ips ?? []).join(", ")}</dd>
          <dt>Joined</dt>
          <dd>{fmtTime(a.created_at)}</dd>
          <dt>Last seen</dt>
          <dd>{a.online ? "now" : `${fmtAgo(a.last_seen)} (${fmtTime(a.last_seen)})`}</dd>
        </dl>
      </div>
      <div class="panel">
        <h2>Recent tasks</h2>
        <ErrorLine error={tasks.error} />
        <table>
          <thead>
            <tr>
              <th>Task</th>
              <th>State</th>
              <th>Exit</th>
              <th>Started</th>
              <th>Took</th>
            </tr>
          </thead>
          <tbody>
            {(tasks.data ?? []).map((t) => (
              <tr>
                <td class="mono">
                  <a href={`/tasks/${seg(t.id)}`}>{t.id}</a>
                </td>
                <td>
                  <Badge state={t.state} />
                </td>
                <td>{t.exit_code ?? (t.signal ? `signal ${t.signal}` : "—")}</td>
                <td>{fmtTime(t.started_at ?? t.created_at)}</td>
                <td>{t.started_at && t.finished_at ? fmtDuration(t.finished_at - t.started_at) : "—"}</td>
              </tr>
            ))}
            {tasks.data && tasks.data.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
                  No tasks yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <div class="panel">
        <h2>Alerts</h2>
        <ErrorLine error={alerts.error} />
        {mine.length === 0 ? (
          <p class="muted">No alerts.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>Rule</th>
                <th>Level</th>
                <th>Metric</th>
                <th>Value</th>
                <th>Raised</th>
                <th>Cleared</th>
              </tr>
            </thead>
            <tbody>
              {mine.map((x) => (
                <tr>
                  <td>{x.rule}</td>
                  <td>
                    <Badge state={x.level} />
                  </td>
                  <td>{x.metric}</td>
                  <td>
                    {x.value.toFixed(1)} (threshold {x.threshold})
                  </td>
                  <td>{fmtTime(x.raised_at)}</td>
                  <td>{x.cleared_at ? fmtTime(x.cleared_at) : <Badge state="active">open</Badge>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/machines/:name", view: MachinePage }];
