// Fleet: online/offline counts and every machine, filtered by the CLI's selector syntax with
// a live match count. Rows are virtualised: only those in view are in the DOM, so 10,000
// machines scroll as smoothly as ten.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { get } from "../api";
import { setQuery } from "../router";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import type { Agent, FleetSummary } from "../types";
import { ErrorLine, Meter, fmtAgo, pct, useDebounced, useLoad, useTitle } from "../util";

const ROW_H = 34;
const OVERSCAN = 8;

type SortKey = "name" | "online" | "os" | "seen" | "cpu" | "mem" | "disk";

function osOf(a: Agent): string {
  const f = a.facts;
  if (!f) return "";
  const name = f.os_name || f.os || "";
  return [name, f.os_version].filter(Boolean).join(" ");
}

const cpuOf = (a: Agent) => (a.metrics ? a.metrics.cpu_percent : -1);
const memOf = (a: Agent) => (a.metrics ? pct(a.metrics.memory_used_bytes, a.metrics.memory_total_bytes) : -1);
const diskOf = (a: Agent) => (a.metrics ? pct(a.metrics.disk_used_bytes, a.metrics.disk_total_bytes) : -1);

function sorter(key: SortKey): (a: Agent, b: Agent) => number {
  switch (key) {
    case "online":
      return (a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name);
    case "os":
      return (a, b) => osOf(a).localeCompare(osOf(b)) || a.name.localeCompare(b.name);
    case "seen":
      return (a, b) => (b.last_seen ?? 0) - (a.last_seen ?? 0);
    case "cpu":
      return (a, b) => cpuOf(b) - cpuOf(a);
    case "mem":
      return (a, b) => memOf(b) - memOf(a);
    case "disk":
      return (a, b) => diskOf(b) - diskOf(a);
    default:
      return (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }
}

/** A selector box with the live count of machines it picks (used by Fleet and Run). */
export function SelectorInput({
  value,
  onInput,
  id = "selector",
  label = "Selector",
  placeholder = "role=web & !web-3   (empty: every machine)",
}: {
  value: string;
  onInput: (v: string) => void;
  id?: string;
  label?: string;
  placeholder?: string;
}) {
  const sel = useDebounced(value.trim(), 150);
  const sum = useLoad((signal) => get<FleetSummary>("/api/v1/fleet/summary", { target: sel }, signal), [sel], 3000);
  return (
    <div class="grow">
      <label for={id}>{label}</label>
      <div class="row">
        <input
          id={id}
          class="grow mono"
          value={value}
          spellcheck={false}
          autoComplete="off"
          placeholder={placeholder}
          onInput={(e) => onInput((e.target as HTMLInputElement).value)}
        />
        <span class="matchcount" data-testid="match-count" aria-live="polite">
          {sum.error
            ? ""
            : sum.data
              ? `${sum.data.matched} match${sum.data.matched === 1 ? "" : "es"} (${sum.data.matched_online} online)`
              : "…"}
        </span>
      </div>
      {sum.error && <ErrorLine error={sum.error} />}
    </div>
  );
}

function FleetPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Fleet");
  const me = useMe();
  const [sel, setSel] = useState(query.get("sel") ?? "");
  const [sort, setSort] = useState<SortKey>((query.get("sort") as SortKey) || "name");
  const target = useDebounced(sel.trim(), 300);
  useEffect(() => setQuery({ sel: target || undefined }), [target]);
  const total = useLoad((signal) => get<FleetSummary>("/api/v1/fleet/summary", {}, signal), [], 3000);
  const list = useLoad((signal) => get<Agent[]>("/api/v1/agents", { target }, signal), [target], 10000);
  const rows = useMemo(() => (list.data ? [...list.data].sort(sorter(sort)) : []), [list.data, sort]);

  const head = (key: SortKey, label: string, cls = "") => (
    <button
      type="button"
      class={`link ${cls}`}
      aria-sort={sort === key ? "descending" : undefined}
      onClick={() => {
        setSort(key);
        setQuery({ sort: key === "name" ? undefined : key });
      }}
    >
      {label}
      {sort === key ? " ▾" : ""}
    </button>
  );

  return (
    <section>
      <h1>Fleet</h1>
      <div class="stats">
        <div class="stat">
          <span class="muted">Machines</span>
          <b data-testid="fleet-total">{total.data?.total ?? "…"}</b>
        </div>
        <div class="stat ok">
          <span class="muted">Online</span>
          <b data-testid="fleet-online">{total.data?.online ?? "…"}</b>
        </div>
        <div class={`stat ${total.data && total.data.total - total.data.online > 0 ? "bad" : ""}`}>
          <span class="muted">Offline</span>
          <b data-testid="fleet-offline">{total.data ? total.data.total - total.data.online : "…"}</b>
        </div>
      </div>
      <div class="row" style={{ marginBottom: "10px", alignItems: "flex-end" }}>
        <SelectorInput value={sel} onInput={setSel} id="fleet-selector" label="Filter (selector)" />
        {canRun(me) && (
          <a class="button" href={`/run${target ? `?target=${encodeURIComponent(target)}` : ""}`}>
            Run on these…
          </a>
        )}
      </div>
      <ErrorLine error={list.error} />
      <p class="muted small" data-testid="row-count">
        {list.data ? `${rows.length} machine${rows.length === 1 ? "" : "s"} shown` : list.loading ? "loading…" : ""}
      </p>
      <VirtualRows
        rows={rows}
        header={
          <div class="vhead" role="row">
            <span>{head("online", "●")}</span>
            <span role="columnheader">{head("name", "Name")}</span>
            <span role="columnheader">Labels</span>
            <span role="columnheader" class="wide">
              {head("os", "OS")}
            </span>
            <span role="columnheader">{head("seen", "Last seen")}</span>
            <span role="columnheader">{head("cpu", "CPU")}</span>
            <span role="columnheader" class="wide">
              {head("mem", "Memory")}
            </span>
            <span role="columnheader" class="wide">
              {head("disk", "Disk")}
            </span>
          </div>
        }
      />
    </section>
  );
}

function VirtualRows({ rows, header }: { rows: Agent[]; header: preact.ComponentChildren }) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(800);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const measure = () => setHeight(el.clientHeight);
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const now = Date.now();
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
  const shown = rows.slice(first, last);
  return (
    <div
      class="vgrid"
      ref={box}
      role="table"
      aria-rowcount={rows.length}
      data-testid="fleet-table"
      onScroll={(e) => setTop((e.target as HTMLDivElement).scrollTop)}
    >
      {header}
      <div style={{ height: `${rows.length * ROW_H}px`, position: "relative" }}>
        {shown.map((a, i) => {
          const m = a.metrics;
          return (
            <div
              class="vrow"
              role="row"
              key={a.id}
              aria-rowindex={first + i + 1}
              data-machine={a.name}
              style={{ top: `${(first + i) * ROW_H}px` }}
            >
              <span>
                <span class={`dot ${a.online ? "on" : "off"}`} title={a.online ? "online" : "offline"} />
              </span>
              <span>
                <a href={`/machines/${encodeURIComponent(a.name)}`}>{a.name}</a>
              </span>
              <span
                class="labels"
                title={Object.entries(a.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join("  ")}
              >
                {Object.entries(a.labels).map(([k, v]) => (
                  <span class="label">
                    {k}={v}
                  </span>
                ))}
              </span>
              <span class="wide">{osOf(a)}</span>
              <span class="muted">{a.online ? "now" : fmtAgo(a.last_seen, now)}</span>
              <span>
                <Meter value={m ? m.cpu_percent : null} />
              </span>
              <span class="wide">
                <Meter value={m ? pct(m.memory_used_bytes, m.memory_total_bytes) : null} />
              </span>
              <span class="wide">
                <Meter value={m ? pct(m.disk_used_bytes, m.disk_total_bytes) : null} />
              </span>
            </div>
          );
        })}
      </div>
    </div>
  );
}

export const routes: Route[] = [
  { pattern: "/", view: FleetPage },
  { pattern: "/fleet", view: FleetPage },
];
