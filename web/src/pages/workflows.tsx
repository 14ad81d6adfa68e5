// Workflows: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function WorkflowsPage() {
  useTitle("Workflows");
  return (
    <section>
      <h1>Workflows</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/workflows", view: WorkflowsPage }];
