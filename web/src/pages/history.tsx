// History: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function HistoryPage() {
  useTitle("History");
  return (
    <section>
      <h1>History</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/runs", view: HistoryPage }];
