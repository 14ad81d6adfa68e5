// Schedules: every schedule with when it fires, what it starts, its state, its next fires and
// its last fire; pause, resume, edit (in place, its fires kept) and delete; a
// form that adds one. A schedule's page: its definition, its next 10 fire times (in its zone
// and here) and its fires, each linking to the run it started.
import { useState } from "preact/hooks";
import { del, get, post, seg } from "../api";
import { navigate, setQuery } from "../router";
import type { Route } from "../routes";
import { canRun, useMe } from "../session";
import { Badge, ErrorLine, fmtAgo, fmtTime, useLoad, useTitle } from "../util";
import { ScheduleForm } from "../components/sched-form";
import type { NextFire, Schedule, ScheduleFire } from "../components/sched-types";
import { fireRunHref, fmtIn, fmtZoned } from "../components/sched-types";
import "./schedules.css";

/** Rows whose following fire times are loaded too. */
const MORE_NEXT_ROWS = 30;

const href = (s: Schedule) => `/schedules/${seg(s.name)}`;

function kindOf(s: Schedule): string {
  if (s.when.startsWith("cron ")) return "cron";
  if (s.when.startsWith("every ")) return "every";
  if (s.when.startsWith("at ")) return "at";
  return "";
}

/** What a schedule starts, in a line or two (server text as text). */
function What({ s }: { s: Schedule }) {
  const t = s.target;
  const sel = t.targets?.length ? (
    <>
      {" "}
      on <code>{t.targets.join(" , ")}</code>
    </>
  ) : null;
  const params = Object.entries(t.params ?? {}).filter(([k]) => t.kind !== "flow" || (k !== "input" && k !== "source"));
  return (
    <div class="sched-what">
      <span class="muted">{t.kind}</span>{" "}
      {t.kind === "command" ? <code>{t.command}</code> : <b>{t.name}</b>}
      {t.kind === "flow" && typeof t.params?.source === "string" && <span class="muted"> ({t.params.source})</span>}
      {sel}
      {t.approve && (
        <span class="badge s-awaiting" title="approved when added">
          approved
        </span>
      )}
      {t.kind === "flow" && typeof t.params?.input === "string" && (
        <div class="small">
          input: <span class="mono">{t.params.input}</span>
        </div>
      )}
      {params.length > 0 && (
        <div class="labels">
          {params.map(([k, v]) => (
            <span class="label">
              {k}={typeof v === "string" ? v : JSON.stringify(v)}
            </span>
          ))}
        </div>
      )}
    </div>
  );
}

/** A fire's result: its outcome, or the state of the run it started, linked. */
function FireResult({ f }: { f: ScheduleFire }) {
  const link = fireRunHref(f);
  const state = f.outcome === "started" ? (f.run_state ?? "started") : f.outcome;
  return (
    <span class="fire-result">
      <Badge state={state} />
      {link && (
        <>
          {" "}
          <a href={link} class="mono small" title={`${f.run_kind === "workflow" ? "workflow run" : "run"} ${f.run_id}`}>
            {f.run_kind === "workflow" ? "workflow run" : "run"} {f.run_id!.slice(0, 10)}
          </a>
        </>
      )}
      {f.detail && <div class="small error-text">{f.detail}</div>}
    </span>
  );
}

function NextCell({ s, more: withMore }: { s: Schedule; more: boolean }) {
  // The following fire times, from the next-fires endpoint (reloaded when the next one moves;
  // only for the first rows, so a long list costs one request per poll).
  const more = useLoad(
    (signal) =>
      !withMore || s.paused || !s.next_fire_at
        ? Promise.resolve([] as NextFire[])
        : get<NextFire[]>(`/api/v1/schedules/${seg(s.name)}/next`, { n: 3 }, signal),
    [s.name, s.next_fire_at, s.paused],
  );
  if (!s.next_fire_at) return <span class="muted">never again</span>;
  const later = (more.data ?? []).filter((n) => n.at > s.next_fire_at!).slice(0, 2);
  return (
    <div data-testid="next-fire" class={s.paused ? "muted" : ""}>
      <span title={`in ${s.tz}: ${fmtZoned(s.next_fire_local)}`}>{fmtTime(s.next_fire_at)}</span>{" "}
      <span class="muted small">{s.paused ? "(paused)" : fmtIn(s.next_fire_at)}</span>
      {s.tz !== "UTC" || kindOf(s) === "cron" ? (
        <div class="small muted">
          {fmtZoned(s.next_fire_local)} {s.tz}
        </div>
      ) : null}
      {later.length > 0 && <div class="small muted">then {later.map((n) => fmtTime(n.at).slice(11)).join(", ")}</div>}
    </div>
  );
}

/** Pause / resume, edit, delete (with an inline confirmation). */
function Actions({ s, onChange, onDeleted }: { s: Schedule; onChange: () => void; onDeleted: () => void }) {
  const [confirm, setConfirm] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const act = async (f: () => Promise<unknown>, after: () => void) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      after();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const path = `/api/v1/schedules/${seg(s.name)}`;
  return (
    <div class="sched-actions">
      <div class="row">
        {s.paused ? (
          <button type="button" disabled={busy} onClick={() => act(() => post(`${path}/resume`), onChange)} aria-label={`Resume ${s.name}`}>
            Resume
          </button>
        ) : (
          <button type="button" disabled={busy} onClick={() => act(() => post(`${path}/pause`), onChange)} aria-label={`Pause ${s.name}`}>
            Pause
          </button>
        )}
        <a class="button" href={`${href(s)}?edit=1`} aria-label={`Edit ${s.name}`}>
          Edit
        </a>
        {!confirm ? (
          <button type="button" class="danger" disabled={busy} onClick={() => setConfirm(true)} aria-label={`Delete ${s.name}`}>
            Delete
          </button>
        ) : (
          <span class="confirm" role="group" aria-label={`Confirm deleting ${s.name}`}>
            <span>Delete it and its fire history?</span>{" "}
            <button type="button" class="danger" disabled={busy} onClick={() => act(() => del(path), onDeleted)}>
              Yes, delete
            </button>{" "}
            <button type="button" onClick={() => setConfirm(false)}>
              Keep
            </button>
          </span>
        )}
      </div>
      <ErrorLine error={error} />
    </div>
  );
}

function SchedulesPage({ query }: { params: Record<string, string>; query: URLSearchParams }) {
  useTitle("Schedules");
  const me = useMe();
  const list = useLoad((signal) => get<Schedule[]>("/api/v1/schedules", undefined, signal), [], 2000);
  const showForm = query.get("new") === "1" && canRun(me);
  const all = list.data ?? [];
  return (
    <section>
      <div class="row sched-head">
        <h1 class="grow">Schedules</h1>
        {canRun(me) && !showForm && (
          <a class="button primary" href="/schedules?new=1">
            New schedule
          </a>
        )}
      </div>
      {showForm && (
        <ScheduleForm onDone={(s) => navigate(href(s))} onCancel={() => setQuery({ new: undefined })} />
      )}
      <ErrorLine error={list.error} />
      {list.data && all.length === 0 && (
        <p class="muted">
          No schedules yet.{" "}
          {canRun(me) && (
            <>
              <a href="/schedules?new=1">Add one</a>, or <code>herd schedules add</code>.
            </>
          )}
        </p>
      )}
      {all.length > 0 && (
        <table class="sched-table" data-testid="schedules">
          <thead>
            <tr>
              <th>Name</th>
              <th>When</th>
              <th>Runs</th>
              <th>State</th>
              <th>Next fire (here)</th>
              <th>Last fire</th>
              {canRun(me) && <th>Actions</th>}
            </tr>
          </thead>
          <tbody>
            {all.map((s, i) => (
              <tr data-schedule={s.name} key={s.id}>
                <td>
                  <a href={href(s)} class="mono">
                    {s.name}
                  </a>
                </td>
                <td>
                  <span class="mono">{s.when}</span>
                  {s.jitter_ms > 0 && <div class="small muted">jitter ≤ {s.jitter_ms} ms</div>}
                </td>
                <td>
                  <What s={s} />
                </td>
                <td data-testid="state">
                  <Badge state={s.paused ? "paused" : "active"} />
                </td>
                <td>
                  <NextCell s={s} more={i < MORE_NEXT_ROWS} />
                </td>
                <td data-testid="last-fire">
                  {s.last ? (
                    <>
                      <FireResult f={s.last} />
                      <div class="small muted" title={fmtTime(s.last.fire_at)}>
                        {fmtAgo(s.last.fire_at)}
                      </div>
                    </>
                  ) : (
                    <span class="muted">none yet</span>
                  )}
                </td>
                {canRun(me) && (
                  <td>
                    <Actions s={s} onChange={list.reload} onDeleted={list.reload} />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function SchedulePage({ params, query }: { params: Record<string, string>; query: URLSearchParams }) {
  const name = params.name;
  useTitle(`Schedule ${name}`);
  const me = useMe();
  const path = `/api/v1/schedules/${seg(name)}`;
  const one = useLoad((signal) => get<Schedule>(path, undefined, signal), [name], 2000);
  const s = one.data;
  const next = useLoad(
    (signal) => get<NextFire[]>(`${path}/next`, { n: 10 }, signal),
    [name, s?.next_fire_at, s?.paused, s?.id],
  );
  const fires = useLoad((signal) => get<ScheduleFire[]>(`${path}/fires`, { limit: 100 }, signal), [name], 2000);
  const editing = query.get("edit") === "1" && canRun(me);

  return (
    <section>
      <p class="muted small">
        <a href="/schedules">Schedules</a> /
      </p>
      <div class="row sched-head">
        <h1>
          Schedule <span class="mono">{name}</span>
        </h1>
        {s && <Badge state={s.paused ? "paused" : "active"} />}
      </div>
      <ErrorLine error={one.error} />
      {s && editing && (
        <ScheduleForm
          key={s.id}
          initial={s}
          onDone={(ns) => navigate(`/schedules/${seg(ns.name)}`)}
          onCancel={() => setQuery({ edit: undefined })}
        />
      )}
      {s && (
        <div class="panel" data-testid="definition">
          <dl class="kv">
            <dt>When</dt>
            <dd class="mono">{s.when}</dd>
            <dt>Zone</dt>
            <dd>{s.tz}</dd>
            <dt>Runs</dt>
            <dd>
              <What s={s} />
            </dd>
            <dt>Overlap</dt>
            <dd>{s.overlap}</dd>
            <dt>Misfire</dt>
            <dd>{s.misfire}</dd>
            <dt>Jitter</dt>
            <dd>{s.jitter_ms > 0 ? `up to ${s.jitter_ms} ms` : "none"}</dd>
            <dt>Added</dt>
            <dd>{fmtTime(s.created_at)}</dd>
            <dt>Acts for</dt>
            <dd>
              {s.created_by} <span class="muted small">(who added or last edited it; each fire is checked as them)</span>
            </dd>
            <dt>Runs it starts</dt>
            <dd>
              created by <code>schedule:{s.name}</code> —{" "}
              <a href={`/runs?who=${encodeURIComponent(`schedule:${s.name}`)}`}>see them in History</a>
            </dd>
          </dl>
          {canRun(me) && (
            <div class="sched-detail-actions">
              <Actions s={s} onChange={one.reload} onDeleted={() => navigate("/schedules")} />
            </div>
          )}
        </div>
      )}
      {s && (
        <div class="sched-cols">
          <div>
            <h2>Next fires</h2>
            {s.paused && <p class="muted small">Paused: once resumed it fires next at its first fire time after then.</p>}
            <ErrorLine error={next.error} />
            <table data-testid="next-fires">
              <thead>
                <tr>
                  <th>In {s.tz}</th>
                  <th>Here</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                {(next.data ?? []).map((n) => (
                  <tr>
                    <td class="mono">{fmtZoned(n.local)}</td>
                    <td class="mono">{fmtTime(n.at)}</td>
                    <td class="muted small">{fmtIn(n.at)}</td>
                  </tr>
                ))}
                {next.data && next.data.length === 0 && (
                  <tr>
                    <td colSpan={3} class="muted">
                      It never fires again.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          <div>
            <h2>Fires</h2>
            <ErrorLine error={fires.error} />
            <table data-testid="fires">
              <thead>
                <tr>
                  <th>Due</th>
                  <th>Late</th>
                  <th>Result</th>
                </tr>
              </thead>
              <tbody>
                {(fires.data ?? []).map((f) => (
                  <tr data-outcome={f.outcome}>
                    <td class="mono">{fmtTime(f.fire_at)}</td>
                    <td class="muted">{f.at - f.fire_at} ms</td>
                    <td>
                      <FireResult f={f} />
                    </td>
                  </tr>
                ))}
                {fires.data && fires.data.length === 0 && (
                  <tr>
                    <td colSpan={3} class="muted">
                      No fires yet.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
            {fires.data && fires.data.length >= 100 && (
              <p class="muted small">
                The latest 100 fires; <code>herd schedules history {s.name} -n 1000</code> shows more.
              </p>
            )}
          </div>
        </div>
      )}
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/schedules", view: SchedulesPage },
  { pattern: "/schedules/:name", view: SchedulePage },
];
