// Small shared pieces: formatting, data loading, badges. Text is always rendered as text
// (Preact escapes it); nothing here sets innerHTML.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export function fmtTime(ms: number | null | undefined): string {
  if (!ms) return "—";
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtAgo(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

export const pct = (used: number, total: number) => (total > 0 ? (100 * used) / total : 0);

/** A coloured state word: succeeded, failed, running, online… */
export function Badge({ state, children }: { state: string; children?: ComponentChildren }) {
  return <span class={`badge s-${state}`}>{children ?? state.replace(/_/g, " ")}</span>;
}

/** A horizontal meter for a percentage. */
export function Meter({ value, label }: { value: number | null; label?: string }) {
  if (value === null || Number.isNaN(value)) return <span class="muted">—</span>;
  const v = Math.max(0, Math.min(100, value));
  const level = v >= 90 ? "crit" : v >= 75 ? "warn" : "ok";
  return (
    <span class="meter" title={label ?? `${v.toFixed(0)} %`}>
      <span class={`meter-bar ${level}`} style={{ width: `${v}%` }} />
      <span class="meter-text">{v.toFixed(0)}%</span>
    </span>
  );
}

export function ErrorLine({ error }: { error: unknown }) {
  if (!error) return null;
  const msg = error instanceof Error ? error.message : String(error);
  return (
    <p class="error" role="alert">
      {msg}
    </p>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | Error | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `fn()` when `deps` change and, with `every` ms, again while the view is shown
 * (skipping a round while one is still in flight). Old answers never overwrite newer ones.
 */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[], every?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [loading, setLoading] = useState(true);
  const gen = useRef(0);
  const busy = useRef(false);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const run = useCallback(() => {
    const my = ++gen.current;
    const ctl = new AbortController();
    busy.current = true;
    fnRef
      .current(ctl.signal)
      .then((d) => {
        if (my === gen.current) {
          setData(d);
          setError(null);
        }
      })
      .catch((e) => {
        if (my === gen.current && e?.name !== "AbortError") setError(e);
      })
      .finally(() => {
        busy.current = false;
        if (my === gen.current) setLoading(false);
      });
    return ctl;
  }, []);
  useEffect(() => {
    setLoading(true);
    const ctl = run();
    let timer: number | undefined;
    if (every) {
      timer = window.setInterval(() => {
        if (!busy.current && document.visibilityState === "visible") run();
      }, every);
    }
    return () => {
      ctl.abort();
      gen.current++;
      if (timer) clearInterval(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return { data, error, loading, reload: run };
}

/** A value that follows `value` once it has stopped changing for `ms`. */
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

/** Sets the page's title while a view is shown. */
export function useTitle(t: string) {
  useEffect(() => {
    document.title = t ? `${t} · herd` : "herd";
  }, [t]);
}
