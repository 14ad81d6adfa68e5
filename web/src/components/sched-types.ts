// The shapes of herd's schedules and LangFlow API (herd-api's schedules.rs and langflow.rs are
// the source of truth; see /api/v1/openapi.json). Times are Unix milliseconds.

export type TargetKind = "job" | "workflow" | "flow" | "command";
export type OverlapPolicy = "skip" | "queue" | "allow";
export type MisfirePolicy = "skip" | "run-once" | "run-all";
export type FireOutcome = "started" | "skipped" | "missed" | "failed";

export interface ScheduleTarget {
  kind: TargetKind;
  name?: string;
  command?: string;
  targets: string[];
  params: Record<string, unknown>;
  approve?: boolean;
}

export interface ScheduleFire {
  fire_at: number;
  at: number;
  outcome: FireOutcome;
  run_id?: string;
  /** `run` (a run of commands) or `workflow` (a job's or workflow's run). */
  run_kind?: string;
  run_state?: string;
  detail?: string;
}

export interface Schedule {
  id: string;
  name: string;
  /** One line: `cron 0 30 2 * * * (Europe/Paris)`, `every 2s`, `at 2026-…Z`. */
  when: string;
  tz: string;
  target: ScheduleTarget;
  overlap: OverlapPolicy;
  misfire: MisfirePolicy;
  jitter_ms: number;
  paused: boolean;
  next_fire_at?: number;
  next_fire_local?: string;
  last?: ScheduleFire;
  created_by: string;
  created_at: number;
}

export interface NewSchedule {
  name: string;
  cron?: string;
  tz?: string;
  every?: string;
  at?: string;
  jitter?: string;
  overlap: OverlapPolicy;
  misfire: MisfirePolicy;
  target: ScheduleTarget;
  paused: boolean;
}

export interface NextFire {
  at: number;
  local: string;
}

/** A stored job or workflow definition (only what the form needs). */
export interface Definition {
  kind: string;
  name: string;
  version: number;
  description?: string;
  definition: Record<string, unknown>;
}

export interface LfSource {
  name: string;
  url: string;
  created_by: string;
  created_at: number;
  synced_at?: number | null;
  flows: number;
}

export interface SyncReport {
  source: string;
  added: number;
  updated: number;
  removed: number;
  unchanged: number;
  error?: string | null;
}

export interface FlowParam {
  name: string;
  display_name: string;
  kind: string;
  value?: string | null;
  advanced: boolean;
}

export interface FlowComponent {
  id: string;
  kind: string;
  display_name: string;
  params: FlowParam[];
}

export interface LfFlow {
  source: string;
  id: string;
  name: string;
  description: string;
  endpoint_name?: string | null;
  updated_at?: string | null;
  removed_at?: number | null;
  synced_at: number;
  inputs: FlowComponent[];
  outputs: FlowComponent[];
  components: FlowComponent[];
}

/** Where a fire's run is shown: a run of commands, or a job's / workflow's run. */
export function fireRunHref(f: ScheduleFire): string | null {
  if (!f.run_id) return null;
  const id = encodeURIComponent(f.run_id);
  return f.run_kind === "workflow" ? `/workflow-runs/${id}` : `/runs/${id}`;
}

/**
 * Tweaks as a JSON object — `{"Component.param": value}` or `{"Component": {"param": value}}` —
 * into the API's `Component.param=value` strings (each value as JSON, so a string stays a
 * string). Throws one line when the text is not such an object.
 */
export function tweaksOf(text: string): string[] {
  const t = text.trim();
  if (!t) return [];
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch (e) {
    throw new Error(`tweaks are not JSON: ${(e as Error).message} — write an object such as {"ChatOutput.sender_name": "ops"}`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(`tweaks must be a JSON object such as {"ChatOutput.sender_name": "ops"}`);
  }
  const out: string[] = [];
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (k.includes(".")) {
      out.push(`${k}=${JSON.stringify(val)}`);
    } else if (val && typeof val === "object" && !Array.isArray(val)) {
      for (const [p, pv] of Object.entries(val as Record<string, unknown>)) out.push(`${k}.${p}=${JSON.stringify(pv)}`);
    } else {
      throw new Error(`tweak "${k}": name it Component.param, or give {"${k}": {"param": value}}`);
    }
  }
  return out;
}

/** The API's tweak strings back into a JSON object's text (for a form prefilled from them). */
export function tweaksText(tweaks: unknown): string {
  if (!Array.isArray(tweaks) || tweaks.length === 0) return "";
  const o: Record<string, unknown> = {};
  for (const t of tweaks) {
    if (typeof t !== "string") continue;
    const i = t.indexOf("=");
    if (i < 0) continue;
    const raw = t.slice(i + 1);
    let v: unknown = raw;
    try {
      v = JSON.parse(raw);
    } catch {
      /* plain text */
    }
    o[t.slice(0, i)] = v;
  }
  return JSON.stringify(o, null, 2);
}

/** An RFC 3339 time with its offset as `YYYY-MM-DD HH:MM:SS +HH:MM`. */
export function fmtZoned(local: string | null | undefined): string {
  if (!local) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(local);
  if (!m) return local;
  return `${m[1]} ${m[2]} ${m[3] === "Z" ? "+00:00" : m[3]}`;
}

/** `in 5s`, `in 3m`, `in 2h`, `in 4d` (or `due` once passed). */
export function fmtIn(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return "";
  const s = Math.round((ms - now) / 1000);
  if (s <= 0) return "due";
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.floor(s / 60)}m`;
  if (s < 86400) return `in ${Math.floor(s / 3600)}h`;
  return `in ${Math.floor(s / 86400)}d`;
}
