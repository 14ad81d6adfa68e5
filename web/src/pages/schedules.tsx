// Schedules: not built yet.
import type { Route } from "../routes";
import { useTitle } from "../util";

function SchedulesPage() {
  useTitle("Schedules");
  return (
    <section>
      <h1>Schedules</h1>
    </section>
  );
}

export const routes: Route[] = [{ pattern: "/schedules", view: SchedulesPage }];
