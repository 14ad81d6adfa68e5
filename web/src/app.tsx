// The shell: login gate, navigation, theme, and the view of the current URL.
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, sessionKey, setSessionKey, setUnauthorizedHandler } from "./api";
import { match, navigate, onLinkClick, useLocation } from "./router";
import type { Route } from "./routes";
import { SessionContext } from "./session";
import type { Me } from "./types";
import { Login } from "./pages/login";
import * as fleet from "./pages/fleet";
import * as machine from "./pages/machine";
import * as run from "./pages/run";
import * as history from "./pages/history";
import * as workflows from "./pages/workflows";
import * as schedules from "./pages/schedules";
import * as flows from "./pages/flows";
import * as ask from "./pages/ask";
import * as audit from "./pages/audit";
import * as settings from "./pages/settings";

const ROUTES: Route[] = [
  ...fleet.routes,
  ...machine.routes,
  ...run.routes,
  ...history.routes,
  ...workflows.routes,
  ...schedules.routes,
  ...flows.routes,
  ...ask.routes,
  ...audit.routes,
  ...settings.routes,
];

const NAV: [string, string][] = [
  ["/fleet", "Fleet"],
  ["/run", "Run"],
  ["/runs", "History"],
  ["/workflows", "Workflows"],
  ["/schedules", "Schedules"],
  ["/flows", "Flows"],
  ["/ask", "Ask"],
  ["/audit", "Audit"],
  ["/settings", "Settings"],
];

type Theme = "light" | "dark" | "auto";

function useTheme(): [Theme, (t: Theme) => void] {
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem("herd.theme") as Theme) || "auto");
  useEffect(() => {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    localStorage.setItem("herd.theme", theme);
  }, [theme]);
  return [theme, setTheme];
}

export function App() {
  const loc = useLocation();
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(() => !!sessionKey());
  const [notice, setNotice] = useState<string | null>(null);
  const [theme, setTheme] = useTheme();

  const logout = (why: string | null) => {
    setSessionKey(null);
    setMe(null);
    setNotice(why);
  };

  useEffect(() => {
    setUnauthorizedHandler((msg) => logout(`Logged out: ${msg}`));
    const key = sessionKey();
    if (!key) return;
    get<Me>("/api/v1/me")
      .then(setMe)
      .catch((e: ApiError) => {
        if (e.status === 401) logout(null);
        else setNotice(e.message);
      })
      .finally(() => setChecking(false));
  }, []);

  if (!me) {
    if (checking) return <p class="center muted">Connecting…</p>;
    return (
      <Login
        notice={notice}
        onLogin={(m) => {
          setNotice(null);
          setMe(m);
        }}
      />
    );
  }

  let view = null;
  const path = loc.path === "/" ? "/fleet" : loc.path;
  for (const r of ROUTES) {
    const params = match(r.pattern, path);
    if (params) {
      const V = r.view;
      view = <V params={params} query={loc.query} />;
      break;
    }
  }
  const section = "/" + (path.split("/")[1] ?? "");
  const active = (href: string) =>
    href === section ||
    (href === "/runs" && (section === "/tasks" || section === "/runs")) ||
    (href === "/fleet" && section === "/machines") ||
    (href === "/workflows" && (section === "/jobs" || section === "/workflow-runs"));

  return (
    <SessionContext.Provider value={me}>
      <div class="shell" onClick={onLinkClick}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="/fleet">
            herd
          </a>
          <nav aria-label="Sections">
            {NAV.map(([href, label]) => (
              <a href={href} class={active(href) ? "active" : ""} aria-current={active(href) ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
          <div class="who">
            <span title={me.scope ? `scope: ${me.scope}` : "every machine"}>
              {me.name} <span class={`badge role-${me.role}`}>{me.role}</span>
            </span>
            <select
              aria-label="Theme"
              value={theme}
              onChange={(e) => setTheme((e.target as HTMLSelectElement).value as Theme)}
            >
              <option value="auto">auto</option>
              <option value="light">light</option>
              <option value="dark">dark</option>
            </select>
            <button type="button" class="link" onClick={() => logout(null)}>
              Log out
            </button>
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          {view ?? (
            <section>
              <h1>Not found</h1>
              <p>
                No view at <code>{loc.path}</code>. <a href="/fleet">Go to the fleet</a>.
              </p>
            </section>
          )}
        </main>
      </div>
    </SessionContext.Provider>
  );
}

export { navigate };
