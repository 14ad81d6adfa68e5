// Who is logged in: the key's name, role and scope (from /api/v1/me), shared by every view.
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Me } from "./types";

export const SessionContext = createContext<Me | null>(null);

export function useMe(): Me {
  const me = useContext(SessionContext);
  if (!me) throw new Error("useMe outside a session");
  return me;
}

/** Whether the key may start, cancel or change things (not a viewer). */
export const canRun = (me: Me) => me.role !== "viewer";
/** Whether the key manages API keys, join tokens and the policy. */
export const isAdmin = (me: Me) => me.role === "admin";
