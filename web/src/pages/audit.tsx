// Audit: who did what to what, newest first, filtered by time, actor and machine (in the URL).
import { useState } from "preact/hooks";
import { get, seg } from "../api";
import { Filters, apiFilters } from "../components/history-filters";
import type { Route } from "../routes";
import { setQuery } from "../router";
import { ErrorLine, fmtAgo, fmtTime, useDebounced, useLoad, useTitle } from "../util";
import "./history.css";

interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  detail: unknown;
}

/** A target as a link where the dashboard has a view of it. */
function Target({ target }: { target: string }) {
  const i = target.indexOf(":");
  const kind = i > 0 ? target.slice(0, i) : "";
  const rest = i > 0 ? target.slice(i + 1) : target;
  const href =
    kind === "run"
      ? `/runs/${seg(rest)}`
      : kind === "task"
        ? `/tasks/${seg(rest)}`
        : kind === "agent"
          ? `/machines/${seg(rest)}`
          : null;
  return href && rest ? (
    <a href={href} class="mono">
      {target}
    </a>
  ) : (
    <span class="mono">{target}</span>
  );
}

/** The particulars as text: one `key: value` line per field of an object. */
function detailText(d: unknown): string {
  if (d === null || d === undefined) return "";
  if (typeof d !== "object" || Array.isArray(d)) return JSON.stringify(d);
  return Object.entries(d as Record<string, unknown>)
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("\n");
}

function AuditPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Audit");
  const p = new URLSearchParams();
  for (const k of ["machine", "since", "who"]) {
    const v = query.get(k);
    if (v) p.set(k, v);
  }
  const key = useDebounced(p.toString(), 250);
  const [limit, setLimit] = useState(100);
  const entries = useLoad(
    (signal) => get<AuditEntry[]>("/api/v1/audit", { ...apiFilters(new URLSearchParams(key), false), limit }, signal),
    [key, limit],
    10000,
  );
  const list = entries.data ?? [];
  return (
    <section>
      <h1>Audit</h1>
      <Filters query={query} idPrefix="audit" />
      <ErrorLine error={entries.error} />
      <div class="panel hlist">
        <table data-testid="audit">
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>What</th>
              <th>Target</th>
              <th>Details</th>
            </tr>
          </thead>
          <tbody>
            {list.map((e) => {
              const d = detailText(e.detail);
              return (
                <tr data-audit={e.id} data-action={e.action}>
                  <td class="small" title={fmtAgo(e.at)}>
                    {fmtTime(e.at)}
                  </td>
                  <td>
                    <button
                      type="button"
                      class="link mono small"
                      title="Only this actor's entries"
                      onClick={() => setQuery({ who: e.actor })}
                    >
                      {e.actor}
                    </button>
                  </td>
                  <td class="mono">{e.action}</td>
                  <td>
                    <Target target={e.target} />
                  </td>
                  <td>{d && <pre class="haudit-detail">{d}</pre>}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {!entries.loading && list.length === 0 && !entries.error && <p class="muted">No entries match.</p>}
        {entries.loading && !entries.data && <p class="muted">loading…</p>}
        {list.length >= limit && (
          <p>
            <button type="button" onClick={() => setLimit((l) => l + 200)}>
              Show more
            </button>
          </p>
        )}
      </div>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/audit", view: AuditPage }];
