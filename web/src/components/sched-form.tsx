// The form that adds a schedule — when it fires (cron in a zone, a period, one time) and what
// it starts (a command on a selector, a job or workflow with parameters, a LangFlow flow) —
// and that edits one in place (`PUT /api/v1/schedules/{name}`: the same schedule, its fire
// history kept, its next fire counted from now; its name stays).
import { useMemo, useState } from "preact/hooks";
import { get, post, put, seg } from "../api";
import { SelectorInput } from "../pages/fleet";
import { ErrorLine, useLoad } from "../util";
import type {
  Definition,
  LfFlow,
  MisfirePolicy,
  NewSchedule,
  OverlapPolicy,
  Schedule,
  TargetKind,
} from "./sched-types";
import { tweaksOf, tweaksText } from "./sched-types";

type WhenKind = "cron" | "every" | "at";

interface FormState {
  name: string;
  when: WhenKind;
  cron: string;
  tz: string;
  every: string;
  at: string;
  jitter: string;
  what: TargetKind;
  command: string;
  selector: string;
  defName: string;
  params: string;
  flow: string;
  input: string;
  tweaks: string;
  overlap: OverlapPolicy;
  misfire: MisfirePolicy;
  paused: boolean;
  approve: boolean;
}

const EMPTY: FormState = {
  name: "",
  when: "every",
  cron: "",
  tz: "UTC",
  every: "",
  at: "",
  jitter: "",
  what: "command",
  command: "",
  selector: "",
  defName: "",
  params: "",
  flow: "",
  input: "",
  tweaks: "",
  overlap: "skip",
  misfire: "run-once",
  paused: false,
  approve: false,
};

/** Several selectors (OR'ed by the API) as one selector. */
function joinSelectors(ts: string[]): string {
  if (ts.length <= 1) return ts[0] ?? "";
  return ts.map((t) => `(${t})`).join(" , ");
}

/** A flow option's value: source and name. */
const flowKey = (source: string, name: string) => `${source}/${name}`;

/** The form's fields from a schedule (to edit it). */
function stateOf(s: Schedule): FormState {
  const f: FormState = { ...EMPTY, name: s.name, tz: s.tz || "UTC" };
  const cron = /^cron (.*) \(([^()]*)\)$/.exec(s.when);
  if (cron) {
    f.when = "cron";
    f.cron = cron[1];
    f.tz = cron[2];
  } else if (s.when.startsWith("every ")) {
    f.when = "every";
    f.every = s.when.slice(6);
  } else if (s.when.startsWith("at ")) {
    f.when = "at";
    f.at = s.when.slice(3);
  }
  f.jitter = s.jitter_ms > 0 ? `${s.jitter_ms}ms` : "";
  const t = s.target;
  f.what = t.kind;
  f.command = t.command ?? "";
  f.selector = joinSelectors(t.targets ?? []);
  const p = { ...(t.params ?? {}) };
  if (t.kind === "flow") {
    const source = typeof p.source === "string" ? p.source : "";
    f.flow = source ? flowKey(source, t.name ?? "") : (t.name ?? "");
    f.input = typeof p.input === "string" ? p.input : "";
    f.tweaks = tweaksText(p.tweaks);
  } else {
    f.defName = t.name ?? "";
    f.params = Object.entries(p)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join("\n");
  }
  f.overlap = s.overlap;
  f.misfire = s.misfire;
  f.paused = s.paused;
  f.approve = !!t.approve;
  return f;
}

/** Whether the form's time (kind, expression, period, time, zone) is the schedule's as it was. */
function sameWhen(a: FormState, b: FormState): boolean {
  return a.when === b.when && a.cron === b.cron && a.every === b.every && a.at === b.at && a.tz === b.tz;
}

/** The body of the add endpoint from the form (one line thrown for what cannot be sent). */
function bodyOf(f: FormState, flows: LfFlow[]): NewSchedule {
  const when =
    f.when === "cron"
      ? { cron: f.cron.trim(), tz: f.tz.trim() || undefined }
      : f.when === "every"
        ? { every: f.every.trim() }
        : { at: f.at.trim(), tz: f.tz.trim() || undefined };
  const targets = f.selector.trim() ? [f.selector.trim()] : [];
  const params: Record<string, unknown> = {};
  let name: string | undefined;
  let command: string | undefined;
  if (f.what === "command") {
    command = f.command;
  } else if (f.what === "flow") {
    const fl = flows.find((x) => flowKey(x.source, x.name) === f.flow);
    name = fl ? fl.name : f.flow;
    if (fl) params.source = fl.source;
    if (f.input) params.input = f.input;
    const tw = tweaksOf(f.tweaks);
    if (tw.length) params.tweaks = tw;
  } else {
    name = f.defName;
    for (const line of f.params.split("\n")) {
      if (!line.trim()) continue;
      const i = line.indexOf("=");
      if (i <= 0) throw new Error(`parameter "${line.trim()}": write NAME=VALUE, one a line`);
      params[line.slice(0, i).trim()] = line.slice(i + 1);
    }
  }
  return {
    name: f.name.trim(),
    ...when,
    jitter: f.jitter.trim() || undefined,
    overlap: f.overlap,
    misfire: f.misfire,
    paused: f.paused,
    target: { kind: f.what, name, command, targets, params, approve: f.approve || undefined },
  };
}

/** The parameters a job or workflow declares (a hint beside the parameters box). */
function DeclaredParams({ def }: { def?: Definition }) {
  const ps = def?.definition?.params;
  if (!ps || typeof ps !== "object") return null;
  const entries = Object.entries(ps as Record<string, { type?: string; default?: unknown }>);
  if (!entries.length) return null;
  return (
    <p class="muted small" data-testid="declared-params">
      takes:{" "}
      {entries.map(([k, v], i) => (
        <span>
          {i > 0 && ", "}
          <code>{k}</code>
          {v && typeof v === "object" && v.type ? ` (${v.type}` : " ("}
          {v && typeof v === "object" && v.default !== undefined ? `, default ${JSON.stringify(v.default)})` : ")"}
        </span>
      ))}
    </p>
  );
}

let zones: string[] | null = null;
function timeZones(): string[] {
  if (!zones) {
    try {
      const sv = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf;
      zones = ["UTC", ...(sv ? sv("timeZone") : [])];
    } catch {
      zones = ["UTC"];
    }
  }
  return zones;
}

export function ScheduleForm({
  initial,
  onDone,
  onCancel,
}: {
  /** The schedule to edit (absent: a new one). */
  initial?: Schedule;
  onDone: (s: Schedule) => void;
  onCancel: () => void;
}) {
  const [f, setF] = useState<FormState>(() => (initial ? stateOf(initial) : EMPTY));
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof FormState>(k: K, v: FormState[K]) => setF((o) => ({ ...o, [k]: v }));
  const inp = (k: keyof FormState) => (e: Event) => set(k, (e.target as HTMLInputElement).value as never);

  const jobs = useLoad(
    (signal) => (f.what === "job" || f.what === "workflow" ? get<Definition[]>(`/api/v1/${f.what}s`, undefined, signal) : Promise.resolve([])),
    [f.what],
  );
  const flows = useLoad(
    (signal) => (f.what === "flow" ? get<LfFlow[]>("/api/v1/langflow/flows", undefined, signal) : Promise.resolve([])),
    [f.what],
  );
  const liveFlows = useMemo(() => (flows.data ?? []).filter((x) => !x.removed_at), [flows.data]);
  const tz = useMemo(() => (f.when === "every" ? [] : timeZones()), [f.when]);
  const idp = initial ? "edit" : "new";

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let body: NewSchedule;
    try {
      body = bodyOf(f, liveFlows);
    } catch (err) {
      setError(err);
      return;
    }
    setBusy(true);
    try {
      if (!initial) {
        onDone(await post<Schedule>("/api/v1/schedules", body));
      } else {
        // In place: a time left as it was is not sent, so the schedule keeps it as stored.
        const edit: Partial<NewSchedule> = { ...body, name: initial.name };
        if (sameWhen(f, stateOf(initial))) {
          delete edit.cron;
          delete edit.every;
          delete edit.at;
          delete edit.tz;
        }
        onDone(await put<Schedule>(`/api/v1/schedules/${seg(initial.name)}`, edit));
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="panel sched-form" onSubmit={submit} aria-label={initial ? "Edit schedule" : "New schedule"}>
      <h2>{initial ? `Edit schedule ${initial.name}` : "New schedule"}</h2>
      {initial && (
        <p class="muted small" data-testid="edit-note">
          Saving changes this schedule in place: its fire history stays, and its next fire is counted from now.
        </p>
      )}
      <div class="sched-grid">
        <div>
          <label for={`${idp}-name`}>Name</label>
          <input
            id={`${idp}-name`}
            class="mono"
            value={f.name}
            required
            readOnly={!!initial}
            placeholder="nightly-backup"
            spellcheck={false}
            autoComplete="off"
            onInput={inp("name")}
          />
          <p class="muted small">
            {initial
              ? "A schedule keeps its name (add one under another name to rename it)."
              : "Letters, digits, _ . - (starting with a letter or digit)."}
          </p>
        </div>

        <fieldset>
          <legend>When</legend>
          <div class="row" role="radiogroup" aria-label="When it fires">
            {(
              [
                ["cron", "Cron"],
                ["every", "Every"],
                ["at", "Once at"],
              ] as [WhenKind, string][]
            ).map(([k, l]) => (
              <label class="radio">
                <input type="radio" name={`${idp}-when`} checked={f.when === k} onChange={() => set("when", k)} /> {l}
              </label>
            ))}
          </div>
          {f.when === "cron" && (
            <div>
              <label for={`${idp}-cron`}>Cron expression</label>
              <input
                id={`${idp}-cron`}
                class="mono wide"
                value={f.cron}
                placeholder="0 30 2 * * *"
                spellcheck={false}
                autoComplete="off"
                onInput={inp("cron")}
              />
              <p class="muted small">
                5 fields (minute first), 6 (seconds first) or <code>@daily</code>; <code>L</code>, <code>W</code>,{" "}
                <code>#</code> understood.
              </p>
            </div>
          )}
          {f.when === "every" && (
            <div>
              <label for={`${idp}-every`}>Interval</label>
              <input
                id={`${idp}-every`}
                class="mono"
                value={f.every}
                placeholder="30s, 5m, 1h30m, 1d"
                spellcheck={false}
                autoComplete="off"
                onInput={inp("every")}
              />
              <p class="muted small">Counted from when the schedule is added (or its interval changed).</p>
            </div>
          )}
          {f.when === "at" && (
            <div>
              <label for={`${idp}-at`}>Time</label>
              <input
                id={`${idp}-at`}
                class="mono wide"
                value={f.at}
                placeholder="2026-12-24 18:00, +10m, or RFC 3339"
                spellcheck={false}
                autoComplete="off"
                onInput={inp("at")}
              />
            </div>
          )}
          {f.when !== "every" && (
            <div>
              <label for={`${idp}-tz`}>Time zone</label>
              <input
                id={`${idp}-tz`}
                class="mono"
                list={`${idp}-zones`}
                value={f.tz}
                placeholder="UTC"
                spellcheck={false}
                autoComplete="off"
                onInput={inp("tz")}
              />
              <datalist id={`${idp}-zones`}>
                {tz.map((z) => (
                  <option value={z} />
                ))}
              </datalist>
            </div>
          )}
          <div>
            <label for={`${idp}-jitter`}>Jitter (optional)</label>
            <input
              id={`${idp}-jitter`}
              class="mono"
              value={f.jitter}
              placeholder="30s"
              spellcheck={false}
              autoComplete="off"
              onInput={inp("jitter")}
            />
          </div>
        </fieldset>

        <fieldset>
          <legend>What it runs</legend>
          <div class="row" role="radiogroup" aria-label="What it runs">
            {(
              [
                ["command", "Command"],
                ["job", "Job"],
                ["workflow", "Workflow"],
                ["flow", "LangFlow flow"],
              ] as [TargetKind, string][]
            ).map(([k, l]) => (
              <label class="radio">
                <input type="radio" name={`${idp}-what`} checked={f.what === k} onChange={() => set("what", k)} /> {l}
              </label>
            ))}
          </div>
          {f.what === "command" && (
            <div>
              <label for={`${idp}-command`}>Command</label>
              <input
                id={`${idp}-command`}
                class="mono wide"
                value={f.command}
                placeholder="uptime"
                spellcheck={false}
                autoComplete="off"
                onInput={inp("command")}
              />
            </div>
          )}
          {(f.what === "job" || f.what === "workflow") && (
            <div>
              <label for={`${idp}-def`}>{f.what === "job" ? "Job to run" : "Workflow to run"}</label>
              <select id={`${idp}-def`} value={f.defName} onChange={inp("defName")}>
                <option value="">— choose —</option>
                {f.defName && !(jobs.data ?? []).some((d) => d.name === f.defName) && (
                  <option value={f.defName}>{f.defName}</option>
                )}
                {(jobs.data ?? []).map((d) => (
                  <option value={d.name}>{d.name}</option>
                ))}
              </select>
              {jobs.data && jobs.data.length === 0 && <span class="muted small"> none applied yet</span>}
              <DeclaredParams def={(jobs.data ?? []).find((d) => d.name === f.defName)} />
              <ErrorLine error={jobs.error} />
              <label for={`${idp}-params`}>Parameters (NAME=VALUE, one a line)</label>
              <textarea
                id={`${idp}-params`}
                rows={3}
                class="wide"
                value={f.params}
                spellcheck={false}
                placeholder="keep=7"
                onInput={inp("params")}
              />
            </div>
          )}
          {f.what === "flow" && (
            <div>
              <label for={`${idp}-flow`}>Flow to run</label>
              <select id={`${idp}-flow`} value={f.flow} onChange={inp("flow")}>
                <option value="">— choose —</option>
                {f.flow && !liveFlows.some((x) => flowKey(x.source, x.name) === f.flow) && (
                  <option value={f.flow}>{f.flow}</option>
                )}
                {liveFlows.map((x) => (
                  <option value={flowKey(x.source, x.name)}>
                    {x.name} ({x.source})
                  </option>
                ))}
              </select>
              {flows.data && liveFlows.length === 0 && (
                <span class="muted small">
                  {" "}
                  no flows synced — <a href="/flows">add a LangFlow source</a>
                </span>
              )}
              <ErrorLine error={flows.error} />
              <label for={`${idp}-input`}>Input text</label>
              <textarea id={`${idp}-input`} rows={2} class="wide" value={f.input} onInput={inp("input")} />
              <label for={`${idp}-tweaks`}>Tweaks (a JSON object)</label>
              <textarea
                id={`${idp}-tweaks`}
                rows={2}
                class="wide"
                value={f.tweaks}
                spellcheck={false}
                placeholder={'{"ChatOutput.sender_name": "ops"}'}
                onInput={inp("tweaks")}
              />
            </div>
          )}
          <SelectorInput
            id={`${idp}-selector`}
            label={
              f.what === "command"
                ? "On machines (selector)"
                : f.what === "flow"
                  ? "Called from (selector; empty: the server's own agent)"
                  : "Machines for steps that name none (selector, optional)"
            }
            placeholder={f.what === "command" ? "role=web" : "(empty: as the definition says)"}
            value={f.selector}
            onInput={(v) => set("selector", v)}
          />
        </fieldset>

        <fieldset>
          <legend>Policies</legend>
          <label for={`${idp}-overlap`}>While the previous fire's run still runs</label>
          <select id={`${idp}-overlap`} value={f.overlap} onChange={inp("overlap")}>
            <option value="skip">skip this fire</option>
            <option value="queue">queue it (one waits at most)</option>
            <option value="allow">allow it</option>
          </select>
          <label for={`${idp}-misfire`}>Fire times missed while no server ran</label>
          <select id={`${idp}-misfire`} value={f.misfire} onChange={inp("misfire")}>
            <option value="run-once">run the latest once</option>
            <option value="skip">skip them</option>
            <option value="run-all">run each (at most 100)</option>
          </select>
          <label class="check">
            <input type="checkbox" checked={f.paused} onChange={(e) => set("paused", (e.target as HTMLInputElement).checked)} />{" "}
            {initial ? "Paused" : "Add it paused"}
          </label>
          <label class="check">
            <input
              type="checkbox"
              checked={f.approve}
              onChange={(e) => set("approve", (e.target as HTMLInputElement).checked)}
            />{" "}
            Approve what it runs if the command policy asks for approval
          </label>
        </fieldset>
      </div>
      <ErrorLine error={error} />
      <div class="row">
        <button type="submit" disabled={busy}>
          {initial ? "Save" : "Add schedule"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
