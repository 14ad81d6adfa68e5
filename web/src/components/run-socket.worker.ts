/// <reference lib="webworker" />
// A run's WebSocket, off the page's main thread: the browser assembles every frame here (herd
// may send output frames of megabytes), and each task's output waits here in a bounded queue
// until the page's terminal asks for more (credit, granted as the terminal parses what it was
// given). Past the queue's cap, the oldest queued bytes — the middle of the output: the
// terminal has the head, the queue keeps the newest — are dropped, and one marker line says
// how many and where the whole output is. So the page sees at most a terminal's worth of
// bytes in flight per task, whatever the task prints. Text messages pass through unchanged.
import { decodeFrame } from "../api";

declare const self: DedicatedWorkerGlobalScope;

/** Bytes waiting for the terminal, at most; past this the middle is dropped. */
const QUEUE_CAP = 2 * 1024 * 1024;
/** What is kept of the queue when it is cut: the newest bytes. */
const QUEUE_KEEP = 512 * 1024;
/** Largest piece handed to the page at once. */
const PIECE = 32 * 1024;

interface Queue {
  chunks: Uint8Array[];
  queued: number;
  skipped: number;
  credit: number;
}

let ws: WebSocket | null = null;
let where: string[] = [];
const queues = new Map<number, Queue>();
const enc = new TextEncoder();

function queue(i: number): Queue {
  let q = queues.get(i);
  if (!q) {
    q = { chunks: [], queued: 0, skipped: 0, credit: 0 };
    queues.set(i, q);
  }
  return q;
}

function fmt(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function push(i: number, data: Uint8Array) {
  if (!data.byteLength) return;
  const q = queue(i);
  q.chunks.push(data);
  q.queued += data.byteLength;
  if (q.queued > QUEUE_CAP) {
    let drop = q.queued - QUEUE_KEEP;
    while (drop > 0 && q.chunks.length) {
      const c = q.chunks[0];
      if (c.byteLength <= drop) {
        q.chunks.shift();
        drop -= c.byteLength;
        q.queued -= c.byteLength;
        q.skipped += c.byteLength;
      } else {
        q.chunks[0] = c.subarray(drop);
        q.queued -= drop;
        q.skipped += drop;
        drop = 0;
      }
    }
  }
  pump(i);
}

function send(i: number, bytes: Uint8Array) {
  // A copy of just these bytes (a view would carry its whole frame), handed over.
  const copy = bytes.slice();
  self.postMessage({ type: "out", index: i, data: copy.buffer }, [copy.buffer]);
}

function pump(i: number) {
  const q = queue(i);
  if (q.skipped && q.credit > 0) {
    const line = enc.encode(
      `\x1b[0m\r\n\x1b[7m[herd: ${fmt(q.skipped)} of output skipped here to keep up — ` +
        `the whole output is on the task's page ${where[i] ?? "/tasks"}]\x1b[0m\r\n`,
    );
    self.postMessage({ type: "skipped", index: i, bytes: q.skipped });
    q.skipped = 0;
    q.credit -= line.byteLength;
    send(i, line);
  }
  while (q.chunks.length && q.credit > 0) {
    const n = Math.min(PIECE, q.credit);
    let c = q.chunks[0];
    if (c.byteLength > n) {
      q.chunks[0] = c.subarray(n);
      c = c.subarray(0, n);
    } else {
      q.chunks.shift();
    }
    q.queued -= c.byteLength;
    q.credit -= c.byteLength;
    send(i, c);
  }
}

function onText(text: string) {
  // Output-related messages stay in order with the output; the rest go to the page.
  if (text.startsWith('{"type":"hello"') || text.includes('"type":"hello"')) {
    try {
      const m = JSON.parse(text);
      if (m.type === "hello") where = (m.tasks ?? []).map((t: { id: string }) => `/tasks/${t.id}`);
    } catch {
      /* passed on as is */
    }
  } else if (text.includes('"type":"omitted"')) {
    try {
      const m = JSON.parse(text);
      if (m.type === "omitted") {
        push(m.index, enc.encode(`\x1b[0m\r\n\x1b[2m[herd: ${m.bytes} bytes of stored output were cut here (over the server's cap)]\x1b[0m\r\n`));
        return;
      }
    } catch {
      /* passed on as is */
    }
  }
  self.postMessage({ type: "text", data: text });
}

self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  switch (m.type) {
    case "open": {
      const s = new WebSocket(m.url, m.protocols);
      s.binaryType = "arraybuffer";
      ws = s;
      s.onopen = () => {
        if (typeof m.first === "string") s.send(m.first);
        self.postMessage({ type: "open" });
      };
      s.onmessage = (ev) => {
        if (ev.data instanceof ArrayBuffer) {
          const f = decodeFrame(ev.data);
          if (f) push(f.index, f.data);
        } else onText(String(ev.data));
      };
      s.onclose = (ev) => self.postMessage({ type: "close", code: ev.code, reason: ev.reason });
      break;
    }
    case "send":
      if (ws?.readyState === WebSocket.OPEN) ws.send(m.data);
      break;
    case "credit":
      queue(m.index).credit += m.bytes;
      pump(m.index);
      break;
    case "close":
      ws?.close();
      self.close();
      break;
  }
};
