// A task's output on its way into a terminal, on the page's side. The run's WebSocket lives in
// a worker (run-socket.worker.ts) that holds each task's output in a bounded queue; the page
// asks it for bytes with credit: IN_FLIGHT when a terminal attaches, then as much again as the
// terminal has parsed (xterm's write callbacks). So the page never holds more than IN_FLIGHT
// bytes of a task's output that its terminal has not parsed, however fast the task prints.

/** The part of xterm's Terminal a feed uses. */
export interface Sink {
  write(data: string | Uint8Array, done?: () => void): void;
}

/** Bytes handed to the terminal and not yet parsed, at most. */
export const IN_FLIGHT = 256 * 1024;

export class Feed {
  private sink: Sink | null = null;
  /** Bumped on every attach/detach, so a detached terminal's callbacks change nothing. */
  private gen = 0;
  /** Bytes that arrived while no terminal was attached (at most the credit granted). */
  private held: Uint8Array[] = [];
  private inflight = 0;
  private granted = false;
  /** Bytes of output dropped (by the worker) to keep up. */
  skipped = 0;

  constructor(private readonly credit: (bytes: number) => void) {}

  /** Output bytes of the task, in order (from the worker, within the credit granted). */
  receive(data: Uint8Array) {
    if (this.sink) this.write(data);
    else this.held.push(data);
  }

  attach(sink: Sink) {
    this.gen++;
    this.sink = sink;
    this.inflight = 0;
    const held = this.held;
    this.held = [];
    for (const d of held) this.write(d);
    if (!this.granted) {
      this.granted = true;
      this.credit(IN_FLIGHT);
    }
  }

  detach() {
    this.gen++;
    this.sink = null;
    // What the old terminal never confirmed is given back, so the stream goes on.
    if (this.inflight) this.credit(this.inflight);
    this.inflight = 0;
  }

  private write(data: Uint8Array) {
    const sink = this.sink!;
    const gen = this.gen;
    const n = data.byteLength;
    this.inflight += n;
    sink.write(data, () => {
      if (gen !== this.gen) return;
      this.inflight -= n;
      this.credit(n);
    });
  }
}
