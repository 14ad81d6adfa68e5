// Log in with an API key: checked against /api/v1/me, then kept in this tab's session
// storage (never in a URL, never in a cookie).
import { useState } from "preact/hooks";
import { ApiError, request, setSessionKey } from "../api";
import type { Me } from "../types";
import { useTitle } from "../util";

export function Login({ notice, onLogin }: { notice: string | null; onLogin: (m: Me) => void }) {
  useTitle("Log in");
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) {
      setError("enter an API key (herd up prints the admin key at first start; herd keys create makes more)");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const checked = await request<Me>("GET", "/api/v1/me", undefined, { key: k });
      setSessionKey(k);
      onLogin(checked);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">herd</h1>
        {notice && <p class="notice">{notice}</p>}
        <label for="key">API key</label>
        <input
          id="key"
          name="key"
          type="password"
          autoComplete="off"
          spellcheck={false}
          autoFocus
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Log in"}
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="muted small">The key stays in this tab only and is sent as a bearer header.</p>
      </form>
    </main>
  );
}
