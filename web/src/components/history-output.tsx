// A task's output as text: both streams over the task's attach WebSocket (live while it runs,
// replayed from the store after; stderr marked from the frames), one stream alone from
// GET /api/v1/tasks/{id}/output. Only the lines in view are rendered,
// so large outputs stay responsive; a search box highlights matches and jumps between them;
// Download saves the stored bytes through a Blob (the key travels as a header, never in a URL).
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, decodeFrame, seg, sessionKey, socket, text, withQuery } from "../api";
import { setQuery } from "../router";
import type { Task } from "../types";
import { ErrorLine, useDebounced } from "../util";

/** Pixel height of one output line (the CSS of .hout-line says the same). */
const LH = 18;
/** Lines rendered beyond the visible ones, above and below. */
const OVERSCAN = 30;
/** Matches counted at most. */
const MAX_MATCHES = 100_000;
/** Characters of one line shown at most (the rest is in the download). */
const MAX_LINE = 20_000;

export const FINAL_TASK = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"]);

// Terminal escapes (colours, cursor moves, titles) are dropped from the text shown.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** A line as a terminal would leave it: escapes dropped, text after the last carriage return. */
export function cleanLine(s: string): string {
  if (s.endsWith("\r")) s = s.slice(0, -1);
  const cr = s.lastIndexOf("\r");
  if (cr >= 0) s = s.slice(cr + 1);
  return s.indexOf("\x1b") >= 0 ? s.replace(ANSI, "") : s;
}

/** Line kinds: what wrote the line. */
const OUT = 0;
const ERR = 1;
const NOTE = 2;

/** The output as lines, appended to as it arrives. */
class Lines {
  text: string[] = [];
  kind: number[] = [];
  private tail = "";
  private tailKind = OUT;

  static from(s: string, kind: number): Lines {
    const l = new Lines();
    const parts = s.split("\n");
    if (parts.length && parts[parts.length - 1] === "") parts.pop();
    l.text = parts.map(cleanLine);
    l.kind = new Array(l.text.length).fill(kind);
    return l;
  }

  push(s: string, kind: number) {
    if (!s) return;
    const parts = s.split("\n");
    for (let i = 0; i < parts.length; i++) {
      const k = this.tail === "" ? kind : this.tailKind === ERR || kind === ERR ? ERR : kind;
      if (i < parts.length - 1) {
        this.text.push(cleanLine(this.tail + parts[i]));
        this.kind.push(k);
        this.tail = "";
        this.tailKind = OUT;
      } else if (parts[i] !== "") {
        this.tail += parts[i];
        this.tailKind = k;
      }
    }
  }

  note(s: string) {
    if (this.tail !== "") this.push("\n", this.tailKind);
    this.text.push(s);
    this.kind.push(NOTE);
  }

  get count(): number {
    return this.text.length + (this.tail !== "" ? 1 : 0);
  }
  line(i: number): string {
    return i < this.text.length ? this.text[i] : cleanLine(this.tail);
  }
  kindAt(i: number): number {
    return i < this.text.length ? this.kind[i] : this.tailKind;
  }
}

interface Matches {
  line: number[];
  col: number[];
  capped: boolean;
}

function findMatches(buf: Lines, q: string): Matches {
  const m: Matches = { line: [], col: [], capped: false };
  if (!q) return m;
  const needle = q.toLowerCase();
  const n = buf.count;
  for (let i = 0; i < n; i++) {
    const l = buf.line(i).toLowerCase();
    let p = l.indexOf(needle);
    while (p >= 0) {
      if (m.line.length >= MAX_MATCHES) {
        m.capped = true;
        return m;
      }
      m.line.push(i);
      m.col.push(p);
      p = l.indexOf(needle, p + needle.length);
    }
  }
  return m;
}

/** The first index of `xs` (sorted) whose value is >= `v`. */
function lowerBound(xs: number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Saves the task's stored output as a file: fetched with the bearer header, saved via a Blob. */
async function download(id: string, stream: string) {
  const key = sessionKey();
  const headers: Record<string, string> = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  let res: Response;
  try {
    res = await fetch(withQuery(`/api/v1/tasks/${seg(id)}/output`, { stream }), {
      headers,
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "cannot reach the herd server — check that it is running and try again");
  }
  if (!res.ok) {
    let msg = `download: HTTP ${res.status}`;
    try {
      const j = await res.json();
      if (j && typeof j.error === "string") msg = j.error;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, msg);
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `herd-task-${id}${stream ? `.${stream}` : ""}.log`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

/** One visible line, with its matches marked. */
function Line({ text, kind, cols, qlen, cur }: { text: string; kind: number; cols: number[]; qlen: number; cur: number }) {
  const cls = `hout-line${kind === ERR ? " err" : kind === NOTE ? " note" : ""}`;
  const cut = text.length > MAX_LINE ? text.length - MAX_LINE : 0;
  if (cut) text = text.slice(0, MAX_LINE);
  const more = cut ? <span class="hout-cut"> … {cut} more characters (Download has them)</span> : null;
  if (cols.length === 0)
    return (
      <div class={cls}>
        {text === "" ? "\u200b" : text}
        {more}
      </div>
    );
  const parts = [];
  let at = 0;
  cols.forEach((c, i) => {
    if (c + qlen > text.length) return;
    if (c > at) parts.push(text.slice(at, c));
    parts.push(<mark class={i === cur ? "cur" : undefined}>{text.slice(c, c + qlen)}</mark>);
    at = c + qlen;
  });
  if (at < text.length) parts.push(text.slice(at));
  return (
    <div class={cls}>
      {parts}
      {more}
    </div>
  );
}

export function TaskOutput({
  task,
  stream,
  onTaskChange,
}: {
  task: Task;
  /** `stdout`, `stderr`, or "" for both. */
  stream: string;
  /** The task changed (a final state arrived on the live connection). */
  onTaskChange: () => void;
}) {
  const running = !FINAL_TASK.has(task.state);
  const [follow, setFollow] = useState(true);
  const live = running && follow;
  // Both streams come over the task's attach WebSocket (live, or replayed from the store for a
  // finished task): its frames say which stream each piece is. One stream alone is plain text.
  const viaSocket = live || stream === "";
  const buf = useRef(new Lines());
  const [version, setVersion] = useState(0);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState("");
  const [reloads, setReloads] = useState(0);
  const [dlError, setDlError] = useState<unknown>(null);
  const [dlBusy, setDlBusy] = useState(false);
  /** The view whose live output arrived whole (its `end`): no need to fetch it again. */
  const complete = useRef("");
  const changed = useRef(onTaskChange);
  changed.current = onTaskChange;
  const view = `${task.id}/${stream}`;

  useEffect(() => {
    setError(null);
    if (!live && complete.current === view) return;
    complete.current = "";
    buf.current = new Lines();
    setVersion((v) => v + 1);
    setLoading(true);
    if (viaSocket) {
      setStatus(live ? "connecting…" : "");
      const ws = socket(`/api/v1/tasks/${seg(task.id)}/attach`);
      const dec = [new TextDecoder(), new TextDecoder()];
      let ended = false;
      let raf = 0;
      const flush = () => {
        if (!raf)
          raf = requestAnimationFrame(() => {
            raf = 0;
            setVersion((v) => v + 1);
          });
      };
      ws.onopen = () => setStatus(live ? "live" : "");
      ws.onmessage = (ev) => {
        if (typeof ev.data === "string") {
          let m: { type: string; bytes?: number; error?: string };
          try {
            m = JSON.parse(ev.data);
          } catch {
            return;
          }
          // Live output counts as loaded at once; a finished task's, once all of it arrived.
          if (m.type === "hello") {
            if (live) setLoading(false);
          } else if (m.type === "omitted") {
            buf.current.note(`[herd: ${m.bytes} bytes of output omitted: over the stored-output cap]`);
            flush();
          } else if (m.type === "task") changed.current();
          else if (m.type === "end") {
            ended = true;
            setLoading(false);
            complete.current = view;
            setStatus("");
            flush();
            changed.current();
          } else if (m.type === "error") setError(m.error ?? "the live output failed");
        } else {
          const f = decodeFrame(ev.data as ArrayBuffer);
          if (!f || (f.stream !== 1 && f.stream !== 2)) return;
          if (stream && f.stream !== (stream === "stderr" ? 2 : 1)) return;
          buf.current.push(dec[f.stream - 1].decode(f.data, { stream: true }), f.stream === 2 ? ERR : OUT);
          flush();
        }
      };
      ws.onclose = (ev) => {
        setLoading(false);
        if (!ended) {
          setStatus("");
          setError(
            ev.reason ||
              (live
                ? "the live output connection closed; turn Follow off and on to reconnect"
                : "the output connection closed before all output arrived; Reload to try again"),
          );
        }
      };
      return () => {
        ws.onclose = null;
        ws.onmessage = null;
        ws.close();
        if (raf) cancelAnimationFrame(raf);
      };
    }
    setStatus("");
    let gone = false;
    const path = `/api/v1/tasks/${seg(task.id)}/output`;
    text(path, { stream })
      .then((t) => {
        if (gone) return;
        buf.current = Lines.from(t, stream === "stderr" ? ERR : OUT);
        setVersion((v) => v + 1);
      })
      .catch((e) => !gone && setError(e))
      .finally(() => !gone && setLoading(false));
    return () => {
      gone = true;
    };
  }, [task.id, live, stream, reloads]);

  // Search: the query, the matches (recounted as output arrives), the current one.
  const [q, setQ] = useState("");
  const dq = useDebounced(q, 150);
  const dv = useDebounced(version, live ? 400 : 0);
  const matches = useMemo(() => findMatches(buf.current, dq), [dq, dv]);
  const [cur, setCur] = useState(0);
  const [jump, setJump] = useState(0);
  useEffect(() => {
    setCur(0);
    if (dq) setJump((j) => j + 1);
  }, [dq]);
  const total = matches.line.length;
  const curIdx = total ? Math.min(cur, total - 1) : -1;
  const step = (d: number) => {
    if (!total) return;
    setCur((c) => (Math.min(c, total - 1) + d + total) % total);
    setJump((j) => j + 1);
  };

  // The visible window of lines.
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(480);
  const stick = useRef(true);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const n = buf.current.count;
  // Following: stay at the bottom while the reader is there.
  useLayoutEffect(() => {
    const el = box.current;
    if (el && live && stick.current) {
      el.scrollTop = el.scrollHeight;
      setTop(el.scrollTop);
    }
  }, [version, live]);
  // A jump to the current match: its line into the middle, then its mark into view sideways.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el || curIdx < 0 || !jump) return;
    const line = matches.line[curIdx];
    if (line * LH < el.scrollTop || (line + 1) * LH > el.scrollTop + el.clientHeight) {
      el.scrollTop = Math.max(0, line * LH - el.clientHeight / 2);
      setTop(el.scrollTop);
    }
    stick.current = false;
  }, [jump]);
  useLayoutEffect(() => {
    const el = box.current;
    const mark = el?.querySelector("mark.cur");
    if (!el || !mark || !jump) return;
    // Sideways within the output only (the page itself stays where the reader left it).
    const m = mark.getBoundingClientRect();
    const b = el.getBoundingClientRect();
    if (m.left < b.left) el.scrollLeft -= b.left - m.left + 24;
    else if (m.right > b.right) el.scrollLeft += m.right - b.right + 24;
  }, [jump, top]);

  const hasErr = useMemo(() => buf.current.kind.includes(ERR) || buf.current.kindAt(n - 1) === ERR, [version]);
  const first = Math.max(0, Math.floor(top / LH) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + height) / LH) + OVERSCAN);
  const rows = [];
  let mi = lowerBound(matches.line, first);
  const qlen = dq.length;
  for (let i = first; i < last; i++) {
    const cols: number[] = [];
    let curIn = -1;
    while (mi < total && matches.line[mi] === i) {
      if (mi === curIdx) curIn = cols.length;
      cols.push(matches.col[mi]);
      mi++;
    }
    rows.push(<Line text={buf.current.line(i)} kind={buf.current.kindAt(i)} cols={cols} qlen={qlen} cur={curIn} />);
  }

  const countText = !dq
    ? ""
    : total === 0
      ? "no matches"
      : `${curIdx + 1} of ${total}${matches.capped ? "+" : ""} match${total === 1 ? "" : "es"}`;

  return (
    <div class="hout">
      <div class="row hout-bar">
        <div class="row grow">
          <input
            type="search"
            class="grow mono"
            aria-label="Search the output"
            placeholder="Search the output"
            value={q}
            onInput={(e) => setQ((e.target as HTMLInputElement).value)}
            onKeyDown={(e) => {
              if (e.key === "Enter") {
                e.preventDefault();
                step(e.shiftKey ? -1 : 1);
              } else if (e.key === "Escape" && q) {
                e.preventDefault();
                setQ("");
              }
            }}
          />
          <button type="button" aria-label="Previous match" title="Previous match (Shift+Enter)" disabled={!total} onClick={() => step(-1)}>
            ↑
          </button>
          <button type="button" aria-label="Next match" title="Next match (Enter)" disabled={!total} onClick={() => step(1)}>
            ↓
          </button>
          <span class="matchcount" data-testid="output-matches" aria-live="polite">
            {countText}
          </span>
        </div>
        <label class="hout-inline">
          Stream{" "}
          <select value={stream} onChange={(e) => setQuery({ stream: (e.target as HTMLSelectElement).value })}>
            <option value="">stdout + stderr</option>
            <option value="stdout">stdout</option>
            <option value="stderr">stderr</option>
          </select>
        </label>
        {running && (
          <label class="hout-inline">
            <input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} />{" "}
            Follow
          </label>
        )}
        {!live && (
          <button
            type="button"
            onClick={() => {
              complete.current = "";
              setReloads((r) => r + 1);
            }}
          >
            Reload
          </button>
        )}
        <button
          type="button"
          disabled={dlBusy}
          onClick={async () => {
            setDlError(null);
            setDlBusy(true);
            try {
              await download(task.id, stream);
            } catch (e) {
              setDlError(e);
            } finally {
              setDlBusy(false);
            }
          }}
        >
          {dlBusy ? "Downloading…" : "Download"}
        </button>
      </div>
      <ErrorLine error={error} />
      <ErrorLine error={dlError} />
      <div class="small muted hout-status" aria-live="polite">
        {loading ? "loading…" : `${n} line${n === 1 ? "" : "s"}`}
        {status && ` · ${status}`}
        {hasErr && (
          <span>
            {" · "}
            <span class="hout-legend">stderr</span> marked
          </span>
        )}
      </div>
      <div
        class="hout-box"
        ref={box}
        tabIndex={0}
        role="region"
        aria-label="Output"
        data-testid="task-output"
        onScroll={(e) => {
          const el = e.currentTarget as HTMLDivElement;
          setTop(el.scrollTop);
          stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 2 * LH;
        }}
      >
        <div class="hout-space" style={{ height: `${n * LH}px` }}>
          <pre class="hout-pre" style={{ top: `${first * LH}px` }}>
            {rows}
          </pre>
        </div>
        {!loading && n === 0 && <p class="muted hout-empty">No output{running ? " yet" : ""}.</p>}
      </div>
    </div>
  );
}
