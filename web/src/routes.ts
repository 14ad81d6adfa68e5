// A view of the dashboard at a URL pattern. Each page module exports its own.
import type { ComponentType } from "preact";

export interface Route {
  /** `/machines/:name` — a `:x` segment is a parameter. */
  pattern: string;
  view: ComponentType<{ params: Record<string, string>; query: URLSearchParams }>;
}
