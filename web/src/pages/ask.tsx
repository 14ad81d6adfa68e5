// Ask: herd's AI operator in the browser. `/ask`: a plain-language request and the machines
// → the model's plan, each step with herd's own policy decision, reviewed step by step and
// run. `/ask/:id`: the plan's run, live. `/ask/:id/log`: every exchange with the model.
// What the model writes and what commands print is shown as text, never as HTML.
import { useEffect, useState } from "preact/hooks";
import { get, post, seg } from "../api";
import { setQuery } from "../router";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import { Badge, ErrorLine, fmtAgo, fmtTime, useLoad, useTitle } from "../util";
import { SelectorInput } from "./fleet";
import { PlanReview } from "../components/ask-plan";
import { ExchangeView, RunView } from "../components/ask-run";
import type { AskExchange, AskPlan, AskRunView, FlowRun } from "../components/ask-types";
import "./ask.css";

/** A plan's run's request (loaded once: it does not change). */
function RequestOf({ id }: { id: string }) {
  const v = useLoad((signal) => get<AskRunView>(`/api/v1/ask/runs/${seg(id)}`, undefined, signal), [id]);
  if (v.error) return <span class="muted">—</span>;
  return <span class="ask-recent-request">{v.data?.request ?? "…"}</span>;
}

function RecentRuns() {
  const runs = useLoad((signal) => get<FlowRun[]>("/api/v1/workflow-runs", { limit: 200 }, signal), [], 10000);
  const mine = (runs.data ?? []).filter((r) => r.name === "ask" && r.version === 0 && r.kind === "workflow").slice(0, 15);
  return (
    <section class="panel ask-recent" aria-labelledby="ask-recent-h">
      <h2 id="ask-recent-h">Recent plans' runs</h2>
      <ErrorLine error={runs.error} />
      {runs.data && !mine.length && <p class="muted">None yet.</p>}
      {mine.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">run</th>
              <th scope="col">request</th>
              <th scope="col">state</th>
              <th scope="col">by</th>
              <th scope="col">started</th>
            </tr>
          </thead>
          <tbody>
            {mine.map((r) => (
              <tr>
                <td>
                  <a class="mono" href={`/ask/${encodeURIComponent(r.id)}`}>
                    {r.id.slice(0, 12)}
                  </a>
                </td>
                <td>
                  <RequestOf id={r.id} />
                </td>
                <td>
                  <Badge state={r.state} />
                </td>
                <td>{r.created_by}</td>
                <td title={fmtTime(r.created_at)}>{fmtAgo(r.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function AskPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Ask");
  const me = useMe();
  const [request, setRequest] = useState("");
  const [sel, setSel] = useState(query.get("sel") ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [plan, setPlan] = useState<{ plan: AskPlan; targets: string[]; all: boolean } | null>(null);

  const ask = async (e: Event) => {
    e.preventDefault();
    const target = sel.trim();
    const targets = target ? [target] : [];
    setQuery({ sel: target || undefined });
    setBusy(true);
    setError(null);
    setPlan(null);
    try {
      const p = await post<AskPlan>("/api/v1/ask/plan", { request: request.trim(), targets, all: !target });
      setPlan({ plan: p, targets, all: !target });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Ask</h1>
      <form class="panel ask-form" onSubmit={ask} aria-label="Ask for a plan">
        <label for="ask-request">Request</label>
        <textarea
          id="ask-request"
          class="ask-request"
          rows={3}
          placeholder="What to do, in plain language — e.g. free disk space in /var/log on the web machines"
          value={request}
          onInput={(e) => setRequest((e.target as HTMLTextAreaElement).value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ask(e);
          }}
        />
        <div class="row ask-form-row">
          <SelectorInput id="ask-target" label="Machines (selector)" value={sel} onInput={setSel} />
          <button type="submit" class="primary" disabled={busy || !request.trim()}>
            {busy ? "Asking the model…" : "Plan"}
          </button>
        </div>
        <p class="small muted">
          The model proposes a plan; nothing runs until you review it.
          {canRun(me) ? "" : " This key is a viewer's: it can see plans but not run them."}
        </p>
        <ErrorLine error={error} />
      </form>
      {busy && (
        <p class="muted" role="status">
          Asking the model for a plan…
        </p>
      )}
      {plan && (
        <PlanReview key={plan.plan.plan_id} plan={plan.plan} targets={plan.targets} all={plan.all} canRun={canRun(me)} />
      )}
      {!plan && <RecentRuns />}
    </section>
  );
}

function RunTabs({ id, tab }: { id: string; tab: "run" | "log" }) {
  const href = `/ask/${encodeURIComponent(id)}`;
  return (
    <nav class="tabs ask-tabs" aria-label="Views of the plan's run">
      <a href={href} class={`button${tab === "run" ? " current" : ""}`} aria-current={tab === "run" ? "page" : undefined}>
        Run
      </a>
      <a
        href={`${href}/log`}
        class={`button${tab === "log" ? " current" : ""}`}
        aria-current={tab === "log" ? "page" : undefined}
      >
        Model log
      </a>
    </nav>
  );
}

function AskRunPage({ params }: { params: Record<string, string>; query: URLSearchParams }) {
  const id = params.id;
  useTitle(`Ask ${id.slice(0, 8)}`);
  const me = useMe();
  const [live, setLive] = useState(true);
  const [override, setOverride] = useState<AskRunView | null>(null);
  const view = useLoad(
    (signal) => get<AskRunView>(`/api/v1/ask/runs/${seg(id)}`, undefined, signal),
    [id, live],
    live ? 1000 : undefined,
  );
  const [cancelError, setCancelError] = useState<unknown>(null);
  const v = override ?? view.data;
  useEffect(() => setOverride(null), [view.data]);
  useEffect(() => {
    const d = view.data;
    if (!d) return;
    // Followed until it ended and its summary is written (shortly after it ends).
    const ended = d.run.state !== "running";
    const settled = d.summary !== null || (d.run.finished_at !== null && Date.now() - d.run.finished_at > 20000);
    setLive(!(ended && settled));
  }, [view.data]);

  const cancel = async () => {
    setCancelError(null);
    try {
      await post(`/api/v1/workflow-runs/${seg(id)}/cancel`);
      view.reload();
    } catch (e) {
      setCancelError(e);
    }
  };

  return (
    <section>
      <h1>
        Plan's run <span class="mono">{id.slice(0, 12)}</span> {v && <Badge state={v.run.state} />}
      </h1>
      <RunTabs id={id} tab="run" />
      <ErrorLine error={view.error} />
      {!v && !view.error && <p class="muted">Loading…</p>}
      {v && (
        <>
          <div class="panel">
            <p class="ask-request-shown" data-testid="request">
              {v.request}
            </p>
            <p class="small muted">
              by {v.run.created_by} · {fmtTime(v.run.created_at)}
              {v.run.finished_at ? ` · ended ${fmtTime(v.run.finished_at)}` : ""} · machines:{" "}
              {(v.run.targets ?? []).join(", ") || "—"}
              {v.unattended ? " · unattended" : ""}
              {live ? " · following" : ""} ·{" "}
              <a href={`/workflow-runs/${encodeURIComponent(v.run.id)}`}>as a workflow run</a>
            </p>
            {canRun(me) && v.run.state === "running" && (
              <button type="button" class="danger" disabled={v.run.cancel_requested} onClick={cancel}>
                {v.run.cancel_requested ? "Cancelling…" : "Cancel run"}
              </button>
            )}
            <ErrorLine error={cancelError} />
          </div>
          {v.summary !== null && (
            <section class="panel ask-summary" aria-labelledby="ask-summary-h" data-testid="summary">
              <h2 id="ask-summary-h">Summary</h2>
              <pre>{v.summary}</pre>
            </section>
          )}
          <RunView view={v} live={live} onView={setOverride} />
        </>
      )}
    </section>
  );
}

function AskLogPage({ params }: { params: Record<string, string>; query: URLSearchParams }) {
  const id = params.id;
  useTitle(`Model log ${id.slice(0, 8)}`);
  const log = useLoad((signal) => get<AskExchange[]>(`/api/v1/ask/runs/${seg(id)}/log`, undefined, signal), [id], 5000);
  return (
    <section>
      <h1>
        Plan's run <span class="mono">{id.slice(0, 12)}</span>: model log
      </h1>
      <RunTabs id={id} tab="log" />
      <ErrorLine error={log.error} />
      {log.data && !log.data.length && <p class="muted">No exchange with the model was recorded.</p>}
      <div data-testid="model-log">
        {(log.data ?? []).map((x, i) => (
          <ExchangeView x={x} index={i} />
        ))}
      </div>
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/ask", view: AskPage },
  { pattern: "/ask/:id", view: AskRunPage },
  { pattern: "/ask/:id/log", view: AskLogPage },
];
