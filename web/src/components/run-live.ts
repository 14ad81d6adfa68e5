// A run watched over herd's WebSocket: `/api/v1/runs/start` (the run request is the first
// message; the run is created by it) or `/api/v1/runs/{id}/attach` (output replayed from the
// start). The socket itself lives in a worker (run-socket.worker.ts), which bounds each
// task's output; this keeps the run, its tasks and progress for the view, and hands each
// task's output to that task's Feed (see run-feed.ts). A started run is handed from the Run
// form to the run's own page without closing its socket (`handOff` / `takeOver`).
import { sessionKey } from "../api";
import type { Progress, Run, ServerMessage, Task, TaskState } from "../types";
import { Feed } from "./run-feed";

export type Limit = number | string;

/** The body of a run request (herd-api's RunRequest with the spec's fields beside it). */
export interface RunRequest {
  command: string;
  targets: string[];
  all?: boolean;
  approve?: boolean;
  timeout_ms?: number;
  interactive?: boolean;
  tty?: boolean;
  window?: { rows: number; cols: number };
  wait_offline_ms?: number;
  limits?: { concurrency?: Limit; max_errors?: Limit; batch_wait_ms?: number };
}

export const FINAL: TaskState[] = ["succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"];
export const isFinal = (s: TaskState) => FINAL.includes(s);

export class LiveRun {
  run: Run | null = null;
  tasks: Task[] = [];
  feeds: Feed[] = [];
  progress: Progress | null = null;
  ended = false;
  /** The server's one line when the watch (or the start) failed. */
  error: string | null = null;
  /** The socket closed before `end`. */
  lost = false;
  /** Bytes of output dropped to keep up, in all. */
  skipped = 0;
  private worker: Worker;
  private state: "connecting" | "open" | "closed" = "connecting";
  private listeners = new Set<() => void>();
  private onHello: ((l: LiveRun) => void) | null = null;

  private constructor(path: string, first?: string, onHello?: (l: LiveRun) => void) {
    this.onHello = onHello ?? null;
    this.worker = new Worker(new URL("./run-socket.worker.ts", import.meta.url), { type: "module" });
    this.worker.onmessage = (e: MessageEvent) => this.fromWorker(e.data);
    this.worker.onerror = () => {
      this.error ??= "the page could not start its connection to the server — reload the page";
      this.state = "closed";
      this.changed();
    };
    // The key travels as a subprotocol beside `herd`, as api.ts's socket() does; never in a URL.
    const url = new URL(path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    this.worker.postMessage({ type: "open", url: url.toString(), protocols: ["herd", `herd-key.${sessionKey() ?? ""}`], first });
  }

  /** Creates a run over the start socket; `onHello` once the server created it. */
  static start(req: RunRequest, onHello: (l: LiveRun) => void): LiveRun {
    return new LiveRun("/api/v1/runs/start", JSON.stringify(req), onHello);
  }

  /** Watches an existing run, its output from the start. */
  static attach(id: string): LiveRun {
    return new LiveRun(`/api/v1/runs/${encodeURIComponent(id)}/attach`);
  }

  get open() {
    return this.state === "open";
  }

  private fromWorker(m: { type: string; [k: string]: unknown }) {
    switch (m.type) {
      case "out":
        this.feeds[m.index as number]?.receive(new Uint8Array(m.data as ArrayBuffer));
        break;
      case "skipped":
        this.skipped += m.bytes as number;
        if (this.feeds[m.index as number]) this.feeds[m.index as number].skipped += m.bytes as number;
        this.changed();
        break;
      case "text":
        this.message(m.data as string);
        break;
      case "open":
        this.state = "open";
        break;
      case "close":
        this.state = "closed";
        if (!this.ended && !this.error) {
          this.lost = true;
          if (!this.run) this.error = "the server closed the connection before the run started — check the server and try again";
        }
        this.changed();
        break;
    }
  }

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private changed() {
    this.listeners.forEach((f) => f());
  }

  private message(data: string) {
    let m: ServerMessage;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    switch (m.type) {
      case "hello":
        this.run = m.run;
        this.tasks = m.tasks;
        this.feeds = m.tasks.map((_, i) => new Feed((bytes) => this.worker.postMessage({ type: "credit", index: i, bytes })));
        this.onHello?.(this);
        this.onHello = null;
        break;
      case "task":
        if (this.tasks[m.index]) {
          this.tasks = this.tasks.slice();
          this.tasks[m.index] = m.task;
        }
        break;
      case "progress": {
        const { type: _, ...p } = m;
        this.progress = p;
        break;
      }
      case "end":
        this.run = m.run;
        this.ended = true;
        break;
      case "error":
        this.error = m.error;
        break;
      default:
        return;
    }
    this.changed();
  }

  /** Newer rows of tasks that have not ended (from polling the run), by id. */
  merge(run: Run, tasks: Task[]) {
    let any = false;
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const next = this.tasks.map((t) => {
      const n = byId.get(t.id);
      if (!n || isFinal(t.state) || (n.state === t.state && n.started_at === t.started_at)) return t;
      any = true;
      return n;
    });
    if (this.run && !this.ended && run.cancel_requested !== this.run.cancel_requested) {
      this.run = { ...this.run, cancel_requested: run.cancel_requested };
      any = true;
    }
    if (any) {
      this.tasks = next;
      this.changed();
    }
  }

  private sendText(o: object): boolean {
    if (!this.open) return false;
    this.worker.postMessage({ type: "send", data: JSON.stringify(o) });
    return true;
  }

  stdin(data: string) {
    if (this.open) this.worker.postMessage({ type: "send", data: new TextEncoder().encode(data) });
  }

  eof() {
    return this.sendText({ type: "eof" });
  }

  cancel() {
    return this.sendText({ type: "cancel" });
  }

  resize(rows: number, cols: number) {
    this.sendText({ type: "resize", rows, cols });
  }

  close() {
    this.onHello = null;
    this.state = "closed";
    this.worker.onmessage = null;
    this.worker.postMessage({ type: "close" });
    // The worker closes its socket, then itself; in case it cannot, it goes anyway.
    const w = this.worker;
    setTimeout(() => w.terminate(), 2000);
  }
}

/** Started runs on their way from the Run form to their page, by run id. */
const handed = new Map<string, LiveRun>();

export function handOff(l: LiveRun) {
  if (l.run) handed.set(l.run.id, l);
}

export function takeOver(id: string): LiveRun | undefined {
  const l = handed.get(id);
  handed.delete(id);
  return l;
}
