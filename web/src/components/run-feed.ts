// A task's output on its way into a terminal, bounded: bytes are written to the terminal only
// while it keeps up (a cap on bytes written but not yet parsed, tracked with write
// callbacks). What arrives faster waits in a queue; once the queue passes its cap, the oldest
// queued bytes (the middle of the output: the terminal has the head, the queue keeps the
// newest) are dropped and one marker line says how many, and where the whole output is. So
// a task streaming 100 MB costs the page a bounded amount of memory and parsing.

/** The part of xterm's Terminal a feed uses. */
export interface Sink {
  write(data: string | Uint8Array, done?: () => void): void;
}

/** Bytes handed to the terminal and not yet parsed, at most (then the feed waits). */
export const IN_FLIGHT = 256 * 1024;
/** Bytes waiting for the terminal, at most; past this the middle is dropped. */
export const QUEUE_CAP = 2 * 1024 * 1024;
/** What is kept of the queue when it is cut: the newest bytes. */
export const QUEUE_KEEP = 512 * 1024;
/** Largest single write: xterm parses one write without yielding. */
const PIECE = 16 * 1024;

export function fmtSkipped(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export class Feed {
  private sink: Sink | null = null;
  /** Bumped on every attach/detach, so a detached terminal's callbacks change nothing. */
  private gen = 0;
  private queue: Uint8Array[] = [];
  private queued = 0;
  private inflight = 0;
  /** Bytes dropped since the last marker line. */
  private skipped = 0;
  /** Bytes dropped in all. */
  skippedTotal = 0;
  /** Bytes received in all. */
  received = 0;

  constructor(private readonly where: () => string) {}

  /** Output bytes of the task, in order. */
  push(data: Uint8Array) {
    if (data.byteLength === 0) return;
    this.received += data.byteLength;
    this.queue.push(data);
    this.queued += data.byteLength;
    if (this.queued > QUEUE_CAP) this.cut();
    this.pump();
  }

  /** A line of herd's own (not the task's output), shown dimmed. */
  note(text: string) {
    this.push(new TextEncoder().encode(`\x1b[0m\r\n\x1b[2m[herd: ${text}]\x1b[0m\r\n`));
  }

  /** Bytes waiting for the terminal (for tests and the benchmark). */
  get backlog() {
    return this.queued + this.inflight;
  }

  attach(sink: Sink) {
    this.gen++;
    this.sink = sink;
    this.inflight = 0;
    this.pump();
  }

  detach() {
    this.gen++;
    this.sink = null;
    this.inflight = 0;
  }

  /** Drops the oldest queued bytes down to QUEUE_KEEP. */
  private cut() {
    let drop = this.queued - QUEUE_KEEP;
    while (drop > 0 && this.queue.length) {
      const c = this.queue[0];
      if (c.byteLength <= drop) {
        this.queue.shift();
        drop -= c.byteLength;
        this.queued -= c.byteLength;
        this.skipped += c.byteLength;
      } else {
        this.queue[0] = c.subarray(drop);
        this.queued -= drop;
        this.skipped += drop;
        drop = 0;
      }
    }
  }

  private write(data: string | Uint8Array, n: number) {
    const sink = this.sink;
    if (!sink) return;
    const gen = this.gen;
    this.inflight += n;
    sink.write(data, () => {
      if (gen !== this.gen) return;
      this.inflight -= n;
      this.pump();
    });
  }

  private pump() {
    if (!this.sink) return;
    if (this.skipped) {
      this.skippedTotal += this.skipped;
      const line =
        `\x1b[0m\r\n\x1b[7m[herd: ${fmtSkipped(this.skipped)} of output skipped here to keep up — ` +
        `the whole output is on the task's page ${this.where()}]\x1b[0m\r\n`;
      this.skipped = 0;
      this.write(line, line.length);
    }
    while (this.queue.length && this.inflight < IN_FLIGHT) {
      let c = this.queue[0];
      if (c.byteLength > PIECE) {
        this.queue[0] = c.subarray(PIECE);
        c = c.subarray(0, PIECE);
      } else {
        this.queue.shift();
      }
      this.queued -= c.byteLength;
      this.write(c, c.byteLength);
    }
  }
}
