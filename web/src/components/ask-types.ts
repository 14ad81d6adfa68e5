// The shapes of herd's AI operator API (`/api/v1/ask`, `/api/v1/policy/check`; herd-api's
// ask.rs and flows.rs are the source of truth).
import type { Task } from "../types";

/** What the command policy says of a command (herd's own classification, never the model's). */
export interface StepCheck {
  class: "safe" | "caution" | "dangerous" | "forbidden" | string;
  decision: "allow" | "approve" | "deny" | string;
  reasons: string[];
}

export interface AskStep {
  id: string;
  description: string;
  command: string;
  expected: string;
  depends_on: string[];
  targets: string[];
}

export interface PlannedStep extends AskStep {
  check: StepCheck;
}

export interface AskPlan {
  request: string;
  summary: string;
  steps: PlannedStep[];
  machines: string[];
  model: string;
  tokens: number;
  plan_id: string;
}

export interface AskRunBody {
  request: string;
  summary: string;
  steps: AskStep[];
  targets: string[];
  all: boolean;
  approved: string[];
  plan_id: string | null;
  unattended: boolean;
}

export type StepState = "pending" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";

export interface FlowStep {
  id: string;
  kind: string;
  group: string;
  needs?: string[];
  state: StepState;
  attempt: number;
  run_id?: string;
  outputs: unknown;
  output?: string;
  detail?: string;
  started_at?: number;
  finished_at?: number;
}

export interface FlowRun {
  id: string;
  kind: string;
  name: string;
  version: number;
  state: "running" | "succeeded" | "failed" | "cancelled";
  targets?: string[];
  created_by: string;
  created_at: number;
  finished_at: number | null;
  cancel_requested: boolean;
  steps?: FlowStep[];
  summary?: string;
}

export interface Validation {
  is_valid?: boolean;
  confidence?: number;
  reason?: string;
  suggested_fix?: string | null;
  should_retry?: boolean;
  by?: string;
}

export interface AskAttempt {
  step: string;
  attempt: number;
  origin: "plan" | "retry" | "alternative" | string;
  command: string;
  description: string;
  check: StepCheck;
  approval: "allowed" | "approved" | "awaiting" | "refused" | "denied" | string;
  run_id: string | null;
  validation: Validation | null;
}

export interface AskRunView {
  run: FlowRun;
  request: string;
  plan_id: string;
  unattended: boolean;
  summary: string | null;
  attempts: AskAttempt[];
}

export interface AskExchange {
  kind: string;
  step: string | null;
  at: number;
  model: string;
  tokens: number;
  request: unknown;
  answer: string;
  error: string | null;
}

/** `GET /api/v1/runs/{id}`: a run of commands with its tasks. */
export interface RunWithTasks {
  id: string;
  command: string;
  state: string;
  tasks: Task[];
}
