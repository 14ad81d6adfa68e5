// The API's shapes the dashboard reads (herd-api is the source of truth; see
// /api/v1/openapi.json). Times are Unix milliseconds.

export type Role = "admin" | "operator" | "viewer";

export interface Me {
  name: string;
  role: Role;
  scope: string | null;
  version: string;
}

export interface Metrics {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
  load1: number;
  load5: number;
  load15: number;
}

export interface Facts {
  machine_id: string;
  hostname: string;
  os: string;
  os_name: string;
  os_version: string;
  kernel: string;
  arch: string;
  cpus: number;
  memory_bytes: number;
  disks: { mount: string; total_bytes: number; [k: string]: unknown }[];
  ips: string[];
  macs: string[];
  [k: string]: unknown;
}

export interface Agent {
  id: string;
  name: string;
  online: boolean;
  version: string;
  labels: Record<string, string>;
  label_sources: Record<string, "agent" | "server">;
  claims: Record<string, string>;
  facts: Facts;
  metrics: Metrics | null;
  created_at: number;
  last_seen: number | null;
  revoked_at: number | null;
}

export interface FleetSummary {
  total: number;
  online: number;
  matched: number;
  matched_online: number;
}

export type TaskState =
  | "queued"
  | "dispatched"
  | "running"
  | "succeeded"
  | "failed"
  | "cancelled"
  | "timed_out"
  | "lost"
  | "skipped";

export type RunState = "running" | "succeeded" | "failed" | "cancelled";

export interface RunSpec {
  timeout_ms: number;
  interactive: boolean;
  tty: boolean;
  env: Record<string, string>;
  cwd: string;
  shell: string;
  [k: string]: unknown;
}

export interface Run {
  id: string;
  command: string;
  selector: string;
  spec: RunSpec;
  created_by: string;
  created_at: number;
  cancel_requested: boolean;
  state: RunState;
  finished_at: number | null;
}

export interface Supervision {
  state: "healthy" | "idle" | "hanging" | "waiting_for_input" | "error_loop";
  class: string;
  prompt?: string;
  secret?: boolean;
  reason?: string;
}

export interface Task {
  id: string;
  run_id: string;
  agent_id: string;
  agent_name: string;
  state: TaskState;
  created_at: number;
  dispatched_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  pid: number | null;
  exit_code: number | null;
  signal: number | null;
  reason: string | null;
  detail: string | null;
  out_seq: number;
  out_total: number;
  outputs: Record<string, string>;
  condition: boolean | null;
  supervision: Supervision | null;
}

export interface Progress {
  total: number;
  pending: number;
  running: number;
  waiting: number;
  succeeded: number;
  failed: number;
  skipped: number;
  cancelled: number;
}

/** A text message of the attach WebSocket. */
export type ServerMessage =
  | { type: "hello"; run: Run; tasks: Task[] }
  | { type: "task"; index: number; task: Task }
  | { type: "omitted"; index: number; bytes: number }
  | ({ type: "progress" } & Progress)
  | { type: "end"; run: Run }
  | { type: "error"; error: string };
