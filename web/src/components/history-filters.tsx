// The filters of the History, Tasks and Audit lists, kept in the URL's query (so a filtered
// view is a link): state, machine, since (1h / 24h / 7d / a custom time) and who (a key's name).
import { useState } from "preact/hooks";
import { get } from "../api";
import { setQuery } from "../router";
import type { Agent } from "../types";
import { useLoad } from "../util";

export const SINCE_PRESETS: [string, string, number][] = [
  ["1h", "last hour", 3600_000],
  ["24h", "last 24 hours", 86400_000],
  ["7d", "last 7 days", 7 * 86400_000],
];

/** `since` of the URL as Unix milliseconds: a preset counts back from now, else a local time. */
export function sinceMs(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const p = SINCE_PRESETS.find(([k]) => k === v);
  if (p) return now - p[2];
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

/** A local `YYYY-MM-DDTHH:MM` for a datetime-local input. */
function localInput(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Machine names for the machine filter's suggestions (loaded once). */
function useMachineNames(): string[] {
  const agents = useLoad((signal) => get<Agent[]>("/api/v1/agents", undefined, signal), []);
  return (agents.data ?? []).map((a) => a.name).sort();
}

export function Filters({
  query,
  states,
  idPrefix,
}: {
  query: URLSearchParams;
  /** The states to offer; none: no state filter. */
  states?: string[];
  idPrefix: string;
}) {
  const names = useMachineNames();
  const since = query.get("since") ?? "";
  const preset = since === "" || SINCE_PRESETS.some(([k]) => k === since);
  const [custom, setCustom] = useState(!preset);
  const showCustom = custom || !preset;
  const id = (x: string) => `${idPrefix}-${x}`;
  const any = ["state", "machine", "since", "who"].some((k) => query.get(k));
  return (
    <form class="hfilters row" role="search" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
      {states && (
        <div>
          <label for={id("state")}>State</label>
          <select
            id={id("state")}
            value={query.get("state") ?? ""}
            onChange={(e) => setQuery({ state: (e.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {states.map((s) => (
              <option value={s}>{s.replace(/_/g, " ")}</option>
            ))}
          </select>
        </div>
      )}
      <div>
        <label for={id("machine")}>Machine</label>
        <input
          id={id("machine")}
          list={id("machines")}
          class="mono"
          placeholder="any"
          autoComplete="off"
          spellcheck={false}
          value={query.get("machine") ?? ""}
          onInput={(e) => setQuery({ machine: (e.target as HTMLInputElement).value })}
        />
        <datalist id={id("machines")}>
          {names.map((n) => (
            <option value={n} />
          ))}
        </datalist>
      </div>
      <div>
        <label for={id("since")}>Since</label>
        <div class="row">
          <select
            id={id("since")}
            value={showCustom ? "custom" : since}
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value;
              if (v === "custom") {
                setCustom(true);
                setQuery({ since: localInput(Date.now() - 3600_000) });
              } else {
                setCustom(false);
                setQuery({ since: v });
              }
            }}
          >
            <option value="">any time</option>
            {SINCE_PRESETS.map(([k, label]) => (
              <option value={k}>{label}</option>
            ))}
            <option value="custom">custom…</option>
          </select>
          {showCustom && (
            <input
              type="datetime-local"
              aria-label="Since (local time)"
              value={preset ? "" : since}
              onChange={(e) => setQuery({ since: (e.target as HTMLInputElement).value })}
            />
          )}
        </div>
      </div>
      <div>
        <label for={id("who")}>Who (key name)</label>
        <input
          id={id("who")}
          class="mono"
          placeholder="anyone"
          autoComplete="off"
          spellcheck={false}
          value={query.get("who") ?? ""}
          onInput={(e) => setQuery({ who: (e.target as HTMLInputElement).value })}
        />
      </div>
      {any && (
        <div class="hfilters-clear">
          <button
            type="button"
            onClick={() => {
              setCustom(false);
              setQuery({ state: undefined, machine: undefined, since: undefined, who: undefined });
            }}
          >
            Clear filters
          </button>
        </div>
      )}
    </form>
  );
}

/** The filters of the URL as the list APIs take them (`since` resolved now). */
export function apiFilters(query: URLSearchParams, withState: boolean) {
  return {
    state: withState ? query.get("state") || undefined : undefined,
    machine: query.get("machine")?.trim() || undefined,
    who: query.get("who")?.trim() || undefined,
    since: sinceMs(query.get("since")),
  };
}
