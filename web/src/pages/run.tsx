// Run: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function RunPage() {
  useTitle("Run");
  return (
    <section>
      <h1>Run</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/run", view: RunPage }];
