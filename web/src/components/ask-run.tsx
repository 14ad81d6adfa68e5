// A plan's run, live: each step's state and attempts (the plan's command, retries, the
// model's alternatives — each with the policy's check, its approval and how it was judged),
// the supervision of its running tasks, prompts answered inline, alternatives awaiting a
// person's approval, outputs, and the summary once it ends. All of it is rendered as text.
import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, seg, text } from "../api";
import { useMe, canRun } from "../session";
import type { Task } from "../types";
import { Badge, ErrorLine, fmtDuration, fmtTime } from "../util";
import { CheckBadges, Reasons } from "./ask-plan";
import type { AskAttempt, AskRunView, FlowStep, RunWithTasks } from "./ask-types";

/** The most output kept per task on this page (its tail); the task's page has all of it. */
const OUTPUT_TAIL = 4000;
/** Output larger than this is not loaded here. */
const OUTPUT_MAX = 512 * 1024;
/** Outputs shown per attempt (the first machines'); the others are a link to their task. */
const OUTPUT_TASKS = 10;

const ENDED = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"]);

interface Live {
  runs: Record<string, RunWithTasks>;
  outputs: Record<string, string>;
  error: unknown;
}

/**
 * The runs (and their tasks' output tails) of the given ids, polled every second while
 * `live`; a run that ended is not fetched again, nor an output whose size did not change.
 */
function useRuns(ids: string[], live: boolean): Live {
  const cache = useRef<{ runs: Record<string, RunWithTasks>; outputs: Record<string, string>; sizes: Record<string, number> }>({
    runs: {},
    outputs: {},
    sizes: {},
  });
  const [, bump] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const key = ids.join(",");
  useEffect(() => {
    let stop = false;
    let busy = false;
    const tick = async () => {
      if (busy || stop) return;
      busy = true;
      try {
        const c = cache.current;
        let changed = false;
        for (const id of ids) {
          const have = c.runs[id];
          if (have && ENDED.has(have.state) && have.tasks.every((t) => ENDED.has(t.state))) continue;
          const r = await get<RunWithTasks>(`/api/v1/runs/${seg(id)}`);
          if (stop) return;
          c.runs[id] = r;
          changed = true;
        }
        for (const id of ids) {
          for (const t of (c.runs[id]?.tasks ?? []).slice(0, OUTPUT_TASKS)) {
            if (!t.started_at || c.sizes[t.id] === t.out_total || t.out_total > OUTPUT_MAX) continue;
            const out = await text(`/api/v1/tasks/${seg(t.id)}/output`);
            if (stop) return;
            c.outputs[t.id] = out.length > OUTPUT_TAIL ? "…" + out.slice(-OUTPUT_TAIL) : out;
            c.sizes[t.id] = t.out_total;
            changed = true;
          }
        }
        setError(null);
        if (changed) bump((n) => n + 1);
      } catch (e) {
        if (!stop) setError(e);
      } finally {
        busy = false;
      }
    };
    tick();
    const timer = live ? window.setInterval(tick, 1000) : undefined;
    return () => {
      stop = true;
      if (timer) clearInterval(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, live]);
  return { runs: cache.current.runs, outputs: cache.current.outputs, error };
}

/** The answer to a prompt a task waits at: sent to its stdin, never shown again. */
function PromptAnswer({ task, step }: { task: Task; step: string }) {
  const sup = task.supervision!;
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const id = `ask-input-${task.id}`;
  const send = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post(`/api/v1/tasks/${seg(task.id)}/input`, { data: `${value}\n`, eof: false });
      setValue("");
      setSent(true);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const prompt = (sup.prompt ?? "").trimEnd();
  return (
    <form class="ask-prompt" onSubmit={send} data-testid="prompt">
      <label for={id}>
        Step {step} on {task.agent_name} waits for input
        {prompt ? (
          <>
            : <span class="mono ask-prompt-text">{prompt}</span>
          </>
        ) : (
          ""
        )}
        {sup.secret ? " (secret: the answer is not shown)" : ""}
      </label>
      <div class="row">
        <input
          id={id}
          class="grow mono"
          type={sup.secret ? "password" : "text"}
          autoComplete="off"
          spellcheck={false}
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
        <button type="submit" class="primary" disabled={busy}>
          Send answer
        </button>
      </div>
      {sent && !error && <p class="small muted">Answer sent.</p>}
      <ErrorLine error={error} />
    </form>
  );
}

function TaskLine({ task, output, step, live, mayAnswer }: { task: Task; output?: string; step: string; live: boolean; mayAnswer: boolean }) {
  const sup = task.supervision;
  const running = !ENDED.has(task.state);
  return (
    <div class="ask-task" data-task={task.id} data-machine={task.agent_name}>
      <div class="row">
        <a href={`/tasks/${encodeURIComponent(task.id)}`}>{task.agent_name}</a>
        <Badge state={task.state} />
        {running && sup && (
          <span data-testid="supervision" title={sup.reason ?? ""}>
            <Badge state={sup.state} />
          </span>
        )}
        {task.detail ? (
          <span class="muted small">{task.detail}</span>
        ) : (
          task.exit_code !== null && <span class="muted small">exit code {task.exit_code}</span>
        )}
        {task.finished_at && task.started_at && (
          <span class="muted small">{fmtDuration(task.finished_at - task.started_at)}</span>
        )}
      </div>
      {running && live && mayAnswer && sup?.state === "waiting_for_input" && <PromptAnswer task={task} step={step} />}
      {output !== undefined && output !== "" && (
        <pre class="ask-output" data-testid="output" aria-label={`Output of step ${step} on ${task.agent_name}`}>
          {output}
        </pre>
      )}
      {task.out_total > OUTPUT_MAX && (
        <p class="small muted">
          Large output: <a href={`/tasks/${encodeURIComponent(task.id)}`}>open the task</a>.
        </p>
      )}
    </div>
  );
}

function Judgement({ a }: { a: AskAttempt }) {
  const v = a.validation;
  if (!v) return <span class="muted">—</span>;
  return (
    <span class="ask-judgement">
      <Badge state={v.is_valid ? "ok" : "failed"}>{v.is_valid ? "valid" : "not valid"}</Badge>{" "}
      <span class="small muted">
        by {v.by ?? "?"}
        {typeof v.confidence === "number" ? `, confidence ${v.confidence}` : ""}
      </span>
      {v.reason && <div class="small">{v.reason}</div>}
      {v.suggested_fix && <div class="small muted">suggested (never run): {v.suggested_fix}</div>}
    </span>
  );
}

/** The run of an attempt: its own once judged, else the step's current one. */
function runOf(a: AskAttempt, step: FlowStep | undefined, current: AskAttempt | undefined): string | null {
  if (a.run_id) return a.run_id;
  if (step?.run_id && current === a) return step.run_id;
  return null;
}

function Approval({ view, a, onView }: { view: AskRunView; a: AskAttempt; onView: (v: AskRunView) => void }) {
  const me = useMe();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const decide = async (approve: boolean) => {
    setBusy(true);
    setError(null);
    try {
      onView(
        await post<AskRunView>(`/api/v1/ask/runs/${seg(view.run.id)}/approve`, {
          step: a.step,
          attempt: a.attempt,
          approve,
        }),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="panel ask-awaiting" role="group" aria-label={`Alternative for step ${a.step}`} data-testid="awaiting" data-step={a.step}>
      <h2>Approval needed</h2>
      <p>
        Step <b>{a.step}</b> failed. The model proposes another command (attempt {a.attempt}), which needs a
        person's approval:
      </p>
      <pre class="ask-command">{a.command}</pre>
      {a.description && <p>{a.description}</p>}
      <CheckBadges check={a.check} />
      <Reasons check={a.check} />
      {canRun(me) ? (
        <div class="row">
          <button type="button" class="primary" disabled={busy} onClick={() => decide(true)}>
            Approve
          </button>
          <button type="button" class="danger" disabled={busy} onClick={() => decide(false)}>
            Reject
          </button>
        </div>
      ) : (
        <p class="muted">A viewer's key cannot decide.</p>
      )}
      <ErrorLine error={error} />
    </div>
  );
}

export function RunView({ view, live, onView }: { view: AskRunView; live: boolean; onView: (v: AskRunView) => void }) {
  const me = useMe();
  const steps = view.run.steps ?? [];
  const byStep = (id: string) => view.attempts.filter((a) => a.step === id);
  // The attempt a running step runs now: the last one allowed or approved without a run yet.
  const currentOf = (s: FlowStep) =>
    s.state === "running"
      ? [...byStep(s.id)].reverse().find((a) => !a.run_id && (a.approval === "allowed" || a.approval === "approved"))
      : undefined;
  const ids: string[] = [];
  for (const s of steps) {
    const cur = currentOf(s);
    for (const a of byStep(s.id)) {
      const r = runOf(a, s, cur);
      if (r && !ids.includes(r)) ids.push(r);
    }
    if (s.run_id && !ids.includes(s.run_id)) ids.push(s.run_id);
  }
  const runs = useRuns(ids, live);
  const awaiting = view.attempts.filter((a) => a.approval === "awaiting");
  const plannedDesc = (id: string) => byStep(id).find((a) => a.origin === "plan")?.description ?? "";

  return (
    <>
      {awaiting.map((a) => (
        <Approval view={view} a={a} onView={onView} />
      ))}
      <ErrorLine error={runs.error} />
      <ol class="ask-steps">
        {steps.map((s) => {
          const cur = currentOf(s);
          const attempts = byStep(s.id);
          return (
            <li class={`ask-step st-${s.state}`} data-step={s.id} data-state={s.state}>
              <div class="row ask-step-head">
                <span class="ask-step-id mono">{s.id}</span>
                <span data-testid="step-state">
                  <Badge state={s.state} />
                </span>
                <span class="grow ask-desc">{plannedDesc(s.id)}</span>
                {s.needs?.length ? <span class="small muted">after: {s.needs.join(", ")}</span> : null}
              </div>
              {s.detail && <p class="small muted ask-detail">{s.detail}</p>}
              <table class="ask-attempts">
                <thead>
                  <tr>
                    <th scope="col">#</th>
                    <th scope="col">origin</th>
                    <th scope="col">command</th>
                    <th scope="col">policy</th>
                    <th scope="col">approval</th>
                    <th scope="col">judgement</th>
                  </tr>
                </thead>
                <tbody>
                  {attempts.map((a) => {
                    const rid = runOf(a, s, cur);
                    const r = rid ? runs.runs[rid] : undefined;
                    return (
                      <>
                        <tr data-attempt={a.attempt} data-origin={a.origin}>
                          <td>{a.attempt}</td>
                          <td>
                            {a.origin}
                            {a.origin !== "plan" && a.description && <div class="small muted">{a.description}</div>}
                          </td>
                          <td>
                            <code class="ask-cmd">{a.command}</code>
                          </td>
                          <td>
                            <CheckBadges check={a.check} />
                          </td>
                          <td>
                            <Badge state={a.approval} />
                          </td>
                          <td>
                            <Judgement a={a} />
                          </td>
                        </tr>
                        {r && r.tasks.length > 0 && (
                          <tr class="ask-tasks-row">
                            <td />
                            <td colSpan={5}>
                              <p class="small muted ask-run-link">
                                Run <a href={`/runs/${encodeURIComponent(r.id)}`}>{r.id.slice(0, 12)}</a> of attempt{" "}
                                {a.attempt} ({r.tasks.length} machine{r.tasks.length === 1 ? "" : "s"})
                              </p>
                              {r.tasks.map((t, i) => (
                                <TaskLine
                                  task={t}
                                  output={i < OUTPUT_TASKS ? runs.outputs[t.id] : undefined}
                                  step={s.id}
                                  live={live}
                                  mayAnswer={canRun(me)}
                                />
                              ))}
                              {r.tasks.length > OUTPUT_TASKS && (
                                <p class="small muted">
                                  Output is shown for the first {OUTPUT_TASKS} machines; each machine's name opens its task.
                                </p>
                              )}
                            </td>
                          </tr>
                        )}
                      </>
                    );
                  })}
                </tbody>
              </table>
            </li>
          );
        })}
      </ol>
    </>
  );
}

/** A JSON answer indented (else as it came), as text. */
function pretty(answer: string): string {
  try {
    return JSON.stringify(JSON.parse(answer), null, 2);
  } catch {
    return answer;
  }
}

/** One exchange with the model, as text. */
export function ExchangeView({ x, index }: { x: { kind: string; step: string | null; at: number; model: string; tokens: number; request: unknown; answer: string; error: string | null }; index: number }) {
  const msgs = Array.isArray(x.request) ? (x.request as { role?: string; content?: string }[]) : [];
  const sent = msgs.length
    ? msgs.map((m) => `── ${m.role ?? "?"} ──\n${m.content ?? ""}`).join("\n\n")
    : JSON.stringify(x.request, null, 2);
  return (
    <section class="panel ask-exchange" data-kind={x.kind} aria-label={`Exchange ${index + 1}: ${x.kind}`}>
      <h3>
        {index + 1}. {x.kind}
        {x.step ? ` · step ${x.step}` : ""}
        <span class="small muted">
          {" "}
          · {fmtTime(x.at)} · {x.model || "—"} · {x.tokens} tokens
        </span>
      </h3>
      {x.error && <p class="error">{x.error}</p>}
      <details>
        <summary>Sent ({msgs.length} messages)</summary>
        <pre class="ask-log-text">{sent}</pre>
      </details>
      <h4>Answer</h4>
      <pre class="ask-log-text" data-testid="answer">
        {pretty(x.answer) || "(empty)"}
      </pre>
    </section>
  );
}
