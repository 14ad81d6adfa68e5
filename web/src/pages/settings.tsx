// Settings: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function SettingsPage() {
  useTitle("Settings");
  return (
    <section>
      <h1>Settings</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/settings", view: SettingsPage }];
