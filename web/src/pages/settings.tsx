// Settings, one URL per section: API keys (/settings/keys), join tokens (/settings/tokens),
// the command policy (/settings/policy) and variables and secrets (/settings/vars). Admin-only
// actions are hidden from other roles (the server refuses them anyway); a new key's secret and
// a new token's join command are shown once; a secret variable's value is never shown.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { del, get, post, put, seg } from "../api";
import { SelectorInput } from "./fleet";
import type { Route } from "../routes";
import { navigate, setQuery } from "../router";
import { canRun, isAdmin, useMe } from "../session";
import type { Role } from "../types";
import { Badge, ErrorLine, fmtAgo, fmtTime, useLoad, useTitle } from "../util";
import "./history.css";

interface ApiKey {
  id: string;
  name: string;
  role: Role;
  scope: string | null;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}
interface CreatedKey {
  key: string;
  id: string;
  name: string;
  role: Role;
  scope: string | null;
  created_at: number;
}
interface JoinToken {
  id: string;
  created_at: number;
  created_by: string;
  expires_at: number;
  uses_left: number;
  usable: boolean;
  labels: Record<string, string> | null;
}
interface CreatedToken {
  token: string;
  id: string;
  expires_at: number;
  uses: number;
  server: string;
  ca_sha256: string | null;
  labels: Record<string, string> | null;
  join_command: string;
}
interface PolicyVersion {
  version: number;
  created_at: number;
  created_by: string;
  policy: unknown;
}
interface StepCheck {
  class: string;
  decision: string;
  reasons: string[];
}
interface Var {
  key: string;
  scope: string;
  value: string | null;
  secret: boolean;
  updated_at: number;
  updated_by: string;
}

const SECTIONS: [string, string][] = [
  ["keys", "API keys"],
  ["tokens", "Join tokens"],
  ["policy", "Command policy"],
  ["vars", "Variables & secrets"],
];

const inputValue = (e: Event) => (e.target as HTMLInputElement).value;

/** Copies `text` to the clipboard; says whether it worked. */
function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [said, setSaid] = useState<string | null>(null);
  return (
    <span class="row">
      <button
        type="button"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(text);
            setSaid("Copied.");
          } catch {
            setSaid("The browser refused the clipboard: select the text and copy it.");
          }
        }}
      >
        {label}
      </button>
      {said && (
        <span class="small muted" role="status">
          {said}
        </span>
      )}
    </span>
  );
}

function Panel({ title, children, testid }: { title: string; children: ComponentChildren; testid?: string }) {
  return (
    <div class="panel" data-testid={testid}>
      <h2>{title}</h2>
      {children}
    </div>
  );
}

// ---- API keys ----

function KeysView() {
  const me = useMe();
  const admin = isAdmin(me);
  const keys = useLoad((signal) => get<ApiKey[]>("/api/v1/keys", undefined, signal), []);
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("operator");
  const [scope, setScope] = useState("");
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [listError, setListError] = useState<unknown>(null);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const k = await post<CreatedKey>("/api/v1/keys", { name: name.trim(), role, scope: scope.trim() || undefined });
      setCreated(k);
      setName("");
      setScope("");
      keys.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (k: ApiKey) => {
    const self = k.name === me.name ? " It is the key you are logged in with: this session ends." : "";
    if (!confirm(`Revoke the API key ${k.name}? Everything using it stops working.${self}`)) return;
    setListError(null);
    try {
      await post<ApiKey>(`/api/v1/keys/${seg(k.id)}/revoke`);
      keys.reload();
    } catch (err) {
      setListError(err);
    }
  };

  return (
    <>
      {admin && (
        <Panel title="Create an API key">
          <form class="row hform" onSubmit={create}>
            <div>
              <label for="key-name">Name</label>
              <input id="key-name" required maxLength={64} value={name} onInput={(e) => setName(inputValue(e))} />
            </div>
            <div>
              <label for="key-role">Role</label>
              <select id="key-role" value={role} onChange={(e) => setRole(inputValue(e) as Role)}>
                <option value="admin">admin — everything</option>
                <option value="operator">operator — runs commands</option>
                <option value="viewer">viewer — reads only</option>
              </select>
            </div>
            <SelectorInput
              id="key-scope"
              label="Scope (optional: its runs stay within this selector)"
              placeholder="empty: every machine"
              value={scope}
              onInput={setScope}
            />
            <button type="submit" disabled={busy}>
              Create key
            </button>
          </form>
          <ErrorLine error={error} />
          {created && (
            <div class="hsecret" data-testid="new-key" role="status">
              <p>
                <b>
                  Key {created.name} ({created.role}) created. Copy its secret now: it is not shown again.
                </b>
              </p>
              <p class="row">
                <code class="mono" data-testid="new-key-secret">
                  {created.key}
                </code>
                <CopyButton text={created.key} label="Copy key" />
              </p>
              <button type="button" onClick={() => setCreated(null)}>
                Done
              </button>
            </div>
          )}
        </Panel>
      )}
      <Panel title="API keys" testid="keys">
        <ErrorLine error={keys.error} />
        <ErrorLine error={listError} />
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>Scope</th>
              <th>Created</th>
              <th>By</th>
              <th>State</th>
              {admin && <th />}
            </tr>
          </thead>
          <tbody>
            {(keys.data ?? []).map((k) => (
              <tr data-key={k.name}>
                <td>
                  {k.name}
                  {k.name === me.name && <span class="muted small"> (you)</span>}
                </td>
                <td>
                  <span class={`badge role-${k.role}`}>{k.role}</span>
                </td>
                <td class="mono small">{k.scope ?? <span class="muted">every machine</span>}</td>
                <td class="small" title={fmtTime(k.created_at)}>
                  {fmtAgo(k.created_at)}
                </td>
                <td class="small">{k.created_by}</td>
                <td>{k.revoked_at ? <Badge state="revoked" /> : <Badge state="active" />}</td>
                {admin && (
                  <td>
                    {!k.revoked_at && (
                      <button type="button" class="danger" aria-label={`Revoke key ${k.name}`} onClick={() => revoke(k)}>
                        Revoke
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </Panel>
    </>
  );
}

// ---- Join tokens ----

const LABEL_RE = /^([A-Za-z0-9_.\-/]+)=(.*)$/;

/** `role=web, zone=eu` as a map, or an error line. */
function parseLabels(s: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const part of s.split(/[,\s]+/).filter(Boolean)) {
    const m = LABEL_RE.exec(part);
    if (!m) return `write labels as key=value, separated by commas (not ${JSON.stringify(part)})`;
    out[m[1]] = m[2];
  }
  return out;
}

function labelsText(l: Record<string, string> | null): string {
  if (!l) return "any";
  const e = Object.entries(l);
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(", ") : "none";
}

function TokensView() {
  const me = useMe();
  const admin = isAdmin(me);
  const tokens = useLoad((signal) => get<JoinToken[]>("/api/v1/tokens", undefined, signal), []);
  const [uses, setUses] = useState("1");
  const [ttl, setTtl] = useState("1");
  const [unit, setUnit] = useState("3600");
  const [labels, setLabels] = useState("");
  const [anyLabels, setAnyLabels] = useState(false);
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [listError, setListError] = useState<unknown>(null);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const l = parseLabels(labels);
    if (typeof l === "string") {
      setError(l);
      return;
    }
    const n = Number(uses);
    const t = Number(ttl) * Number(unit);
    if (!Number.isInteger(n) || n < 1) {
      setError("uses: a whole number from 1");
      return;
    }
    if (!(t >= 1)) {
      setError("valid for: a positive time");
      return;
    }
    setBusy(true);
    try {
      const body: Record<string, unknown> = { uses: n, ttl_secs: Math.round(t) };
      if (anyLabels) body.any_labels = true;
      else if (Object.keys(l).length) body.labels = l;
      setCreated(await post<CreatedToken>("/api/v1/tokens", body));
      tokens.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (t: JoinToken) => {
    if (!confirm(`Revoke join token ${t.id}? No more machines can join with it.`)) return;
    setListError(null);
    try {
      await post<JoinToken>(`/api/v1/tokens/${seg(t.id)}/revoke`);
      tokens.reload();
    } catch (err) {
      setListError(err);
    }
  };

  return (
    <>
      {admin && (
        <Panel title="Create a join token">
          <form class="row hform" onSubmit={create}>
            <div>
              <label for="token-uses">Uses (machines)</label>
              <input id="token-uses" type="number" min={1} max={1000000} value={uses} onInput={(e) => setUses(inputValue(e))} />
            </div>
            <div>
              <label for="token-ttl">Valid for</label>
              <div class="row">
                <input id="token-ttl" type="number" min={1} value={ttl} style={{ width: "6em" }} onInput={(e) => setTtl(inputValue(e))} />
                <select aria-label="Time unit" value={unit} onChange={(e) => setUnit(inputValue(e))}>
                  <option value="60">minutes</option>
                  <option value="3600">hours</option>
                  <option value="86400">days</option>
                </select>
              </div>
            </div>
            <div class="grow">
              <label for="token-labels">Labels its machines may hold</label>
              <input
                id="token-labels"
                class="mono"
                style={{ width: "100%" }}
                placeholder="role=web, zone=*"
                disabled={anyLabels}
                value={labels}
                onInput={(e) => setLabels(inputValue(e))}
              />
            </div>
            <label class="hcheck">
              <input type="checkbox" checked={anyLabels} onChange={(e) => setAnyLabels((e.target as HTMLInputElement).checked)} />
              any labels they declare
            </label>
            <button type="submit" disabled={busy}>
              Create token
            </button>
          </form>
          <p class="small muted">
            Without labels (and without “any labels”), joining machines hold none of the labels they declare until an
            operator sets them.
          </p>
          <ErrorLine error={error} />
          {created && (
            <div class="hsecret" data-testid="new-token" role="status">
              <p>
                <b>
                  Token {created.id} created ({created.uses} use{created.uses === 1 ? "" : "s"}, until{" "}
                  {fmtTime(created.expires_at)}). Run this on the new machine (fill in its NAME); the token is not shown
                  again:
                </b>
              </p>
              <pre data-testid="join-command">{created.join_command}</pre>
              <p class="row">
                <CopyButton text={created.join_command} label="Copy command" />
                <button type="button" onClick={() => setCreated(null)}>
                  Done
                </button>
              </p>
            </div>
          )}
        </Panel>
      )}
      <Panel title="Join tokens" testid="tokens">
        <ErrorLine error={tokens.error} />
        <ErrorLine error={listError} />
        <table>
          <thead>
            <tr>
              <th>Id</th>
              <th>Created</th>
              <th>By</th>
              <th>Expires</th>
              <th>Uses left</th>
              <th>Labels</th>
              <th>State</th>
              {admin && <th />}
            </tr>
          </thead>
          <tbody>
            {(tokens.data ?? []).map((t) => (
              <tr data-token={t.id}>
                <td class="mono">{t.id}</td>
                <td class="small" title={fmtTime(t.created_at)}>
                  {fmtAgo(t.created_at)}
                </td>
                <td class="small">{t.created_by}</td>
                <td class="small">{fmtTime(t.expires_at)}</td>
                <td>{t.uses_left}</td>
                <td class="mono small">{labelsText(t.labels)}</td>
                <td>{t.usable ? <Badge state="active" /> : <Badge state="cancelled">used up or expired</Badge>}</td>
                {admin && (
                  <td>
                    {t.usable && (
                      <button type="button" class="danger" aria-label={`Revoke token ${t.id}`} onClick={() => revoke(t)}>
                        Revoke
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        {tokens.data && tokens.data.length === 0 && <p class="muted">No join tokens.</p>}
      </Panel>
    </>
  );
}

// ---- Command policy ----

function PolicyCheckBox() {
  const me = useMe();
  const [command, setCommand] = useState("");
  const [role, setRole] = useState("");
  const [targets, setTargets] = useState("");
  const [result, setResult] = useState<StepCheck | null>(null);
  const [error, setError] = useState<unknown>(null);
  const check = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    try {
      setResult(
        await post<StepCheck>("/api/v1/policy/check", {
          command,
          role: role || undefined,
          targets: targets.trim() ? [targets.trim()] : undefined,
        }),
      );
    } catch (err) {
      setError(err);
    }
  };
  return (
    <Panel title="Check a command" testid="policy-check">
      <form class="row hform" onSubmit={check}>
        <div class="grow">
          <label for="check-command">Command</label>
          <input
            id="check-command"
            class="mono"
            style={{ width: "100%" }}
            required
            spellcheck={false}
            value={command}
            onInput={(e) => setCommand(inputValue(e))}
          />
        </div>
        <div>
          <label for="check-role">As role</label>
          <select id="check-role" value={role} onChange={(e) => setRole(inputValue(e))}>
            <option value="">mine ({me.role})</option>
            <option value="admin">admin</option>
            <option value="operator">operator</option>
            <option value="viewer">viewer</option>
          </select>
        </div>
        <div>
          <label for="check-targets">On machines (optional selector)</label>
          <input id="check-targets" class="mono" spellcheck={false} value={targets} onInput={(e) => setTargets(inputValue(e))} />
        </div>
        <button type="submit">Check</button>
      </form>
      <ErrorLine error={error} />
      {result && (
        <div data-testid="policy-decision" role="status">
          <p class="row">
            Decision: <Badge state={result.decision} /> Class: <Badge state={result.class} />
          </p>
          {result.reasons.length > 0 && (
            <ul class="hreasons">
              {result.reasons.map((r) => (
                <li>{r}</li>
              ))}
            </ul>
          )}
        </div>
      )}
    </Panel>
  );
}

function PolicyView({ query }: { query: URLSearchParams }) {
  const me = useMe();
  const admin = isAdmin(me);
  const current = useLoad((signal) => get<PolicyVersion>("/api/v1/policy", undefined, signal), []);
  const history = useLoad((signal) => get<PolicyVersion[]>("/api/v1/policy/history", undefined, signal), []);
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const shownV = query.get("version");
  const shown =
    shownV !== null ? (history.data ?? []).find((v) => String(v.version) === shownV) ?? null : null;
  const cur = current.data;

  const store = async (text: string) => {
    setError(null);
    setBusy(true);
    try {
      await put<PolicyVersion>("/api/v1/policy", { text });
      setEditing(null);
      current.reload();
      history.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <PolicyCheckBox />
      <Panel title="Current policy" testid="policy-current">
        <ErrorLine error={current.error} />
        {cur && (
          <div class="hpolicy">
            <p class="row">
              <span>
                Version <b data-testid="policy-version">{cur.version}</b>
                {cur.version === 0 ? " (the built-in default)" : ""}, set by {cur.created_by}
                {cur.version > 0 && ` at ${fmtTime(cur.created_at)}`}
              </span>
              {admin && editing === null && (
                <button type="button" onClick={() => setEditing(JSON.stringify(cur.policy, null, 2))}>
                  Edit policy
                </button>
              )}
            </p>
            {editing === null ? (
              <pre>{JSON.stringify(cur.policy, null, 2)}</pre>
            ) : (
              <>
                <label for="policy-text">Policy (YAML or JSON: default, by_role, by_label)</label>
                <textarea
                  id="policy-text"
                  spellcheck={false}
                  value={editing}
                  onInput={(e) => setEditing((e.target as HTMLTextAreaElement).value)}
                />
                <p class="row">
                  <button type="button" class="primary" disabled={busy} onClick={() => store(editing)}>
                    Save as a new version
                  </button>
                  <button
                    type="button"
                    onClick={() => {
                      setEditing(null);
                      setError(null);
                    }}
                  >
                    Cancel
                  </button>
                </p>
              </>
            )}
            <ErrorLine error={error} />
          </div>
        )}
      </Panel>
      <Panel title="Versions" testid="policy-history">
        <ErrorLine error={history.error} />
        <table>
          <thead>
            <tr>
              <th>Version</th>
              <th>Set</th>
              <th>By</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(history.data ?? []).map((v) => (
              <tr>
                <td>
                  {v.version}
                  {cur && v.version === cur.version && <span class="muted small"> (current)</span>}
                </td>
                <td class="small">{fmtTime(v.created_at)}</td>
                <td class="small">{v.created_by}</td>
                <td class="row">
                  <button
                    type="button"
                    class="link"
                    aria-pressed={shownV === String(v.version)}
                    onClick={() => setQuery({ version: shownV === String(v.version) ? undefined : String(v.version) })}
                  >
                    {shownV === String(v.version) ? "Hide" : "Show"}
                  </button>
                  {admin && cur && v.version !== cur.version && (
                    <button
                      type="button"
                      class="link"
                      aria-label={`Restore version ${v.version}`}
                      onClick={() => {
                        if (confirm(`Store version ${v.version}'s policy as a new version?`))
                          store(JSON.stringify(v.policy, null, 2));
                      }}
                    >
                      Restore
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {history.data && history.data.length === 0 && <p class="muted">No version stored yet: the built-in default applies.</p>}
        {shown && (
          <div class="hpolicy">
            <h2>Version {shown.version}</h2>
            <pre>{JSON.stringify(shown.policy, null, 2)}</pre>
          </div>
        )}
      </Panel>
    </>
  );
}

// ---- Variables and secrets ----

function VarsView({ query }: { query: URLSearchParams }) {
  const me = useMe();
  const scope = query.get("scope") || "global";
  const editable = canRun(me) && scope === "global";
  const vars = useLoad((signal) => get<Var[]>("/api/v1/vars", { scope }, signal), [scope]);
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [secret, setSecret] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [listError, setListError] = useState<unknown>(null);
  const [scopeDraft, setScopeDraft] = useState(scope);
  useEffect(() => setScopeDraft(scope), [scope]);

  const set = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      await put<Var>(`/api/v1/vars/${seg(key.trim())}`, { value, secret });
      setKey("");
      setValue("");
      vars.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (v: Var) => {
    if (!confirm(`Delete the ${v.secret ? "secret" : "variable"} ${v.key}?`)) return;
    setListError(null);
    try {
      await del<Var>(`/api/v1/vars/${seg(v.key)}`);
      vars.reload();
    } catch (err) {
      setListError(err);
    }
  };

  return (
    <>
      {editable && (
        <Panel title="Set a variable">
          <form class="row hform" onSubmit={set} autoComplete="off">
            <div>
              <label for="var-key">Name</label>
              <input
                id="var-key"
                class="mono"
                required
                maxLength={128}
                pattern="[A-Za-z0-9_.\-]+"
                title="letters, digits, _ . -"
                spellcheck={false}
                value={key}
                onInput={(e) => setKey(inputValue(e))}
              />
            </div>
            <div class="grow">
              <label for="var-value">{secret ? "Secret value" : "Value"}</label>
              <input
                id="var-value"
                class="mono"
                style={{ width: "100%" }}
                type={secret ? "password" : "text"}
                autoComplete={secret ? "new-password" : "off"}
                spellcheck={false}
                value={value}
                onInput={(e) => setValue(inputValue(e))}
              />
            </div>
            <label class="hcheck">
              <input type="checkbox" checked={secret} onChange={(e) => setSecret((e.target as HTMLInputElement).checked)} />
              secret (encrypted, never shown)
            </label>
            <button type="submit" disabled={busy}>
              Set
            </button>
          </form>
          <ErrorLine error={error} />
        </Panel>
      )}
      <Panel title="Variables" testid="vars">
        <form
          class="row hform"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ scope: scopeDraft.trim() === "global" ? undefined : scopeDraft.trim() });
          }}
        >
          <div>
            <label for="var-scope">Scope</label>
            <input
              id="var-scope"
              class="mono"
              placeholder="global, job:NAME or workflow:NAME"
              value={scopeDraft}
              onInput={(e) => setScopeDraft(inputValue(e))}
            />
          </div>
          <button type="submit" class="primary">
            Show
          </button>
          {scope !== "global" && <span class="small muted">A job's or workflow's own variables are set by its steps.</span>}
        </form>
        <ErrorLine error={vars.error} />
        <ErrorLine error={listError} />
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Value</th>
              <th>Updated</th>
              <th>By</th>
              {editable && <th />}
            </tr>
          </thead>
          <tbody>
            {(vars.data ?? []).map((v) => (
              <tr data-var={v.key}>
                <td class="mono">{v.key}</td>
                <td class="mono">{v.secret ? <Badge state="paused">secret · hidden</Badge> : v.value}</td>
                <td class="small" title={fmtTime(v.updated_at)}>
                  {fmtAgo(v.updated_at)}
                </td>
                <td class="small">{v.updated_by}</td>
                {editable && (
                  <td class="row">
                    <button
                      type="button"
                      aria-label={`${v.secret ? "Replace" : "Edit"} ${v.key}`}
                      onClick={() => {
                        setKey(v.key);
                        setSecret(v.secret);
                        setValue(v.secret ? "" : v.value ?? "");
                        document.getElementById("var-value")?.focus();
                      }}
                    >
                      {v.secret ? "Replace" : "Edit"}
                    </button>
                    <button type="button" class="danger" aria-label={`Delete ${v.key}`} onClick={() => remove(v)}>
                      Delete
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        {vars.data && vars.data.length === 0 && <p class="muted">No variables in {scope}.</p>}
      </Panel>
    </>
  );
}

// ---- The page ----

function SettingsPage({ params, query }: { params: Record<string, string>; query: URLSearchParams }) {
  const section = params.section;
  const known = SECTIONS.find(([k]) => k === section);
  useTitle(known ? `Settings · ${known[1]}` : "Settings");
  useEffect(() => {
    if (!section) navigate("/settings/keys", true);
  }, [section]);
  if (!section) return null;
  return (
    <section>
      <h1>Settings</h1>
      <nav class="htabs" aria-label="Settings sections">
        {SECTIONS.map(([k, label]) => (
          <a href={`/settings/${k}`} class={k === section ? "active" : ""} aria-current={k === section ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {section === "keys" && <KeysView />}
      {section === "tokens" && <TokensView />}
      {section === "policy" && <PolicyView query={query} />}
      {section === "vars" && <VarsView query={query} />}
      {!known && (
        <p>
          No settings section <code>{section}</code>.
        </p>
      )}
    </section>
  );
}

export const routes: Route[] = [
  { pattern: "/settings", view: SettingsPage },
  { pattern: "/settings/:section", view: SettingsPage },
];
