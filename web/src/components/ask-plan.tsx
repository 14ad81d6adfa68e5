// The review of a plan the model proposed: every step with herd's own policy decision for its
// command (never the model's label), approved as it is, edited (the new command checked by
// the policy again) or rejected (the steps that need it are skipped); then run as
// `herd ask` runs it: the ids of the approved steps the policy gates go with it, a denied
// step never runs. Everything the model wrote is shown as text.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { post } from "../api";
import { navigate } from "../router";
import { Badge, ErrorLine } from "../util";
import type { AskPlan, AskRunBody, PlannedStep, StepCheck } from "./ask-types";
import type { FlowRun } from "./ask-types";

type Status = "open" | "approved" | "rejected";

interface Review {
  command: string;
  check: StepCheck;
  status: Status;
  /** The command as the model wrote it, once edited. */
  original: string | null;
}

/** What the policy does with a command, in words. */
export function decisionText(decision: string): string {
  switch (decision) {
    case "allow":
      return "allowed";
    case "approve":
      return "needs approval";
    case "deny":
      return "denied";
    default:
      return decision;
  }
}

/** The class and decision of the policy for a command, with its reasons. */
export function CheckBadges({ check }: { check: StepCheck }) {
  return (
    <span class="ask-check" data-testid="risk" data-class={check.class} data-decision={check.decision}>
      <Badge state={check.class} />
      <span class={`ask-decision s-${check.decision}`}>{decisionText(check.decision)}</span>
    </span>
  );
}

export function Reasons({ check }: { check: StepCheck }) {
  if (!check.reasons.length) return null;
  return (
    <ul class="ask-reasons small muted">
      {check.reasons.map((r) => (
        <li>{r}</li>
      ))}
    </ul>
  );
}

/** The ids of steps that do not run: rejected, or needing one that does not run. */
function dropped(steps: PlannedStep[], reviews: Record<string, Review>): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of steps) if (reviews[s.id].status === "rejected") out.set(s.id, "rejected");
  let changed = true;
  while (changed) {
    changed = false;
    for (const s of steps) {
      if (out.has(s.id)) continue;
      const d = s.depends_on.find((x) => out.has(x));
      if (d) {
        out.set(s.id, `skipped: it needs step ${d}`);
        changed = true;
      }
    }
  }
  return out;
}

function StepEditor({
  step,
  command,
  targets,
  onSave,
  onCancel,
}: {
  step: PlannedStep;
  command: string;
  targets: string[];
  onSave: (command: string, check: StepCheck) => void;
  onCancel: () => void;
}) {
  const [draft, setDraft] = useState(command);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const id = `ask-edit-${step.id}`;
  const save = async (e: Event) => {
    e.preventDefault();
    const cmd = draft.trim();
    if (!cmd) return;
    setBusy(true);
    setError(null);
    try {
      // The new command checked by herd's policy on the step's machines.
      const check = await post<StepCheck>("/api/v1/policy/check", {
        command: cmd,
        targets: step.targets.length ? step.targets : targets,
      });
      onSave(cmd, check);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="ask-editor" onSubmit={save}>
      <label for={id}>New command of step {step.id}</label>
      <textarea
        id={id}
        rows={Math.min(8, Math.max(2, draft.split("\n").length))}
        spellcheck={false}
        value={draft}
        onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") onCancel();
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) save(e);
        }}
        // The editor opens where the person clicked Edit.
        autoFocus
      />
      <div class="row">
        <button type="submit" disabled={busy || !draft.trim()}>
          {busy ? "Checking…" : "Check and save"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
      <ErrorLine error={error} />
    </form>
  );
}

export function PlanReview({
  plan,
  targets,
  all,
  canRun,
}: {
  plan: AskPlan;
  targets: string[];
  all: boolean;
  canRun: boolean;
}) {
  const [reviews, setReviews] = useState<Record<string, Review>>(() =>
    Object.fromEntries(
      plan.steps.map((s) => [s.id, { command: s.command, check: s.check, status: "open" as Status, original: null }]),
    ),
  );
  const [editing, setEditing] = useState<string | null>(null);
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const off = useMemo(() => dropped(plan.steps, reviews), [plan, reviews]);
  const heading = useRef<HTMLHeadingElement>(null);
  // A new plan takes the focus (keyboard and screen-reader users land on it).
  useEffect(() => heading.current?.focus(), []);

  const set = (id: string, r: Partial<Review>) => setReviews((all) => ({ ...all, [id]: { ...all[id], ...r } }));
  const kept = plan.steps.filter((s) => !off.has(s.id));
  const open = kept.filter((s) => reviews[s.id].status === "open");
  const denied = kept.filter((s) => reviews[s.id].check.decision === "deny");
  const allowedOpen = open.filter((s) => reviews[s.id].check.decision === "allow");
  const why = !kept.length
    ? "Every step is rejected: nothing to run."
    : denied.length
      ? `Step ${denied[0].id} is denied by the command policy: edit or reject it.`
      : open.length
        ? `${open.length} step${open.length === 1 ? "" : "s"} to review: approve, edit or reject each.`
        : editing
          ? "Finish the edit first."
          : null;

  const run = async () => {
    setRunning(true);
    setError(null);
    const body: AskRunBody = {
      request: plan.request,
      summary: plan.summary,
      steps: kept.map((s) => ({
        id: s.id,
        description: s.description,
        command: reviews[s.id].command,
        expected: s.expected,
        depends_on: s.depends_on,
        targets: s.targets,
      })),
      targets,
      all,
      // Only the steps the policy gates need a person's approval; an allowed step runs as
      // it stands.
      approved: kept.filter((s) => reviews[s.id].check.decision === "approve").map((s) => s.id),
      plan_id: plan.plan_id || null,
      // A person follows the run here: alternatives that need approval wait for one, and
      // prompts can be answered.
      unattended: false,
    };
    try {
      const r = await post<FlowRun>("/api/v1/ask/runs", body);
      navigate(`/ask/${encodeURIComponent(r.id)}`);
    } catch (err) {
      setError(err);
      setRunning(false);
    }
  };

  return (
    <section class="panel ask-plan" aria-labelledby="ask-plan-h" data-testid="plan">
      <h2 id="ask-plan-h" tabIndex={-1} ref={heading}>
        Plan
      </h2>
      <p class="ask-summary-line" data-testid="plan-summary">
        {plan.summary}
      </p>
      <p class="small muted">
        For {plan.machines.length} machine{plan.machines.length === 1 ? "" : "s"}: {plan.machines.join(", ")} · model{" "}
        {plan.model} · {plan.tokens} tokens · the risk of each command is herd's command policy's, not the model's
      </p>
      <ol class="ask-steps">
        {plan.steps.map((s) => {
          const r = reviews[s.id];
          const gone = off.get(s.id);
          const state = gone ? (r.status === "rejected" ? "rejected" : "skipped") : r.status;
          return (
            <li class={`ask-step st-${state}`} data-step={s.id} data-state={state}>
              <div class="row ask-step-head">
                <span class="ask-step-id mono">{s.id}</span>
                <CheckBadges check={r.check} />
                <span class="grow ask-desc">{s.description}</span>
                <span class={`badge s-${state === "approved" ? "ok" : state === "open" ? "pending" : "skipped"}`} data-testid="review">
                  {state === "open" ? "to review" : state}
                </span>
              </div>
              <pre class="ask-command" data-testid="command">
                {r.command}
              </pre>
              {r.original !== null && (
                <p class="small muted">
                  edited; the model wrote: <code>{r.original}</code>
                </p>
              )}
              <Reasons check={r.check} />
              <p class="small muted ask-deps">
                {s.depends_on.length ? `after: ${s.depends_on.join(", ")}` : "first: needs no other step"}
                {s.targets.length ? ` · on: ${s.targets.join(", ")}` : ""}
                {s.expected ? ` · expects: ${s.expected}` : ""}
              </p>
              {gone && gone !== "rejected" && <p class="small muted">{gone}</p>}
              {canRun && editing === s.id && (
                <StepEditor
                  step={s}
                  command={r.command}
                  targets={all ? [] : targets}
                  onCancel={() => setEditing(null)}
                  onSave={(command, check) => {
                    set(s.id, {
                      command,
                      check,
                      status: "open",
                      original: command === s.command ? null : s.command,
                    });
                    setEditing(null);
                  }}
                />
              )}
              {canRun && editing !== s.id && !(gone && gone !== "rejected") && (
                <div class="row ask-actions">
                  {r.status !== "rejected" && (
                    <>
                      <button
                        type="button"
                        class={r.check.decision === "approve" ? "primary" : ""}
                        disabled={r.check.decision === "deny"}
                        aria-pressed={r.status === "approved"}
                        title={r.check.decision === "deny" ? "denied by the command policy: edit or reject it" : undefined}
                        aria-label={`Approve step ${s.id}`}
                        onClick={() => set(s.id, { status: "approved" })}
                      >
                        Approve
                      </button>
                      <button type="button" aria-label={`Edit step ${s.id}`} onClick={() => setEditing(s.id)}>
                        Edit
                      </button>
                      <button
                        type="button"
                        class="danger"
                        aria-label={`Reject step ${s.id}`}
                        onClick={() => set(s.id, { status: "rejected" })}
                      >
                        Reject
                      </button>
                    </>
                  )}
                  {r.status !== "open" && (
                    <button type="button" class="link" aria-label={`Undo the review of step ${s.id}`} onClick={() => set(s.id, { status: "open" })}>
                      Undo
                    </button>
                  )}
                </div>
              )}
            </li>
          );
        })}
      </ol>
      {canRun ? (
        <div class="row ask-run-bar">
          <button type="button" class="primary" disabled={!!why || running} onClick={run}>
            {running ? "Starting…" : `Run plan (${kept.length} step${kept.length === 1 ? "" : "s"})`}
          </button>
          {allowedOpen.length > 0 && (
            <button
              type="button"
              onClick={() =>
                setReviews((all) => {
                  const next = { ...all };
                  for (const s of allowedOpen) next[s.id] = { ...next[s.id], status: "approved" };
                  return next;
                })
              }
            >
              Approve the {allowedOpen.length} step{allowedOpen.length === 1 ? "" : "s"} the policy allows
            </button>
          )}
          {why && (
            <span class="muted" data-testid="run-why">
              {why}
            </span>
          )}
        </div>
      ) : (
        <p class="muted">This key is a viewer's: it can see plans but not run them.</p>
      )}
      <ErrorLine error={error} />
    </section>
  );
}
