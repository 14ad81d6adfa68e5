// Flows: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function FlowsPage() {
  useTitle("Flows");
  return (
    <section>
      <h1>Flows</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/flows", view: FlowsPage }];
