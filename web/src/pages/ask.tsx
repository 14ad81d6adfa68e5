// Ask: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function AskPage() {
  useTitle("Ask");
  return (
    <section>
      <h1>Ask</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/ask", view: AskPage }];
