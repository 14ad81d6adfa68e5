// Audit: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function AuditPage() {
  useTitle("Audit");
  return (
    <section>
      <h1>Audit</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/audit", view: AuditPage }];
