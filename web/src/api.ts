// The API client: every call carries the API key as a bearer header (never in a URL, no
// cookies), and every failure becomes an ApiError with the server's one-line message.

const KEY = "herd.key";

/** The API key of this tab's session (sessionStorage: gone when the tab closes). */
export function sessionKey(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setSessionKey(key: string | null) {
  if (key === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

/** A failed call: the HTTP status (0 when the server could not be reached) and one line. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the server says the key is not (or no longer) valid. */
let onUnauthorized: (msg: string) => void = () => {};
export function setUnauthorizedHandler(f: (msg: string) => void) {
  onUnauthorized = f;
}

type Query = Record<string, string | number | boolean | undefined | null>;

/** `path?query`, leaving out empty values. */
export function withQuery(path: string, q?: Query): string {
  if (!q) return path;
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === "") continue;
    p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

export async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  opts: { key?: string; signal?: AbortSignal; raw?: boolean } = {},
): Promise<T> {
  const key = opts.key ?? sessionKey();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "cannot reach the herd server — check that it is running and try again");
  }
  if (!res.ok) {
    let msg = `${method} ${path}: HTTP ${res.status}`;
    try {
      const j = await res.json();
      if (j && typeof j.error === "string") msg = j.error;
    } catch {
      /* not JSON */
    }
    if (res.status === 401 && !opts.key) onUnauthorized(msg);
    throw new ApiError(res.status, msg);
  }
  if (opts.raw) return (await res.text()) as unknown as T;
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, q?: Query, signal?: AbortSignal) =>
  request<T>("GET", withQuery(path, q), undefined, { signal });
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, body ?? {});
export const put = <T>(path: string, body?: unknown) => request<T>("PUT", path, body ?? {});
export const del = <T>(path: string) => request<T>("DELETE", path);
export const text = (path: string, q?: Query) =>
  request<string>("GET", withQuery(path, q), undefined, { raw: true });

/** Encodes one path segment (a machine's name, a run's id). */
export const seg = (s: string) => encodeURIComponent(s);

/**
 * Opens herd's WebSocket at `path`: the key travels as the subprotocol `herd-key.<key>`
 * beside `herd` (a browser cannot set headers on a WebSocket; a URL would put it in logs).
 */
export function socket(path: string): WebSocket {
  const key = sessionKey() ?? "";
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.toString(), ["herd", `herd-key.${key}`]);
  ws.binaryType = "arraybuffer";
  return ws;
}

/** One output frame of the attach WebSocket: `[1][u32 task index][stream][data]`. */
export function decodeFrame(buf: ArrayBuffer): { index: number; stream: number; data: Uint8Array } | null {
  if (buf.byteLength < 6) return null;
  const v = new DataView(buf);
  if (v.getUint8(0) !== 1) return null;
  return { index: v.getUint32(1), stream: v.getUint8(5), data: new Uint8Array(buf, 6) };
}
