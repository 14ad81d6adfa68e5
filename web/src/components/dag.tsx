// A workflow's steps drawn as a graph (SVG, laid out here): steps in layers by the longest
// path of `needs` that leads to them, left to right; an edge per need. `on_failure` and
// `always` steps follow in layers of their own, each after the previous one of its group.
// Every text is an SVG text node (never markup).
import "./dag.css";

export interface DagNode {
  id: string;
  kind: string;
  /** `steps`, `on_failure` or `always`. */
  group: string;
  needs: string[];
  /** The step's `if` expression, when it has one. */
  condition?: string;
  /** A run's step state (pending, running, succeeded, failed, skipped, cancelled). */
  state?: string;
  /** A line under the kind (attempts, a run's time). */
  note?: string;
  /** Where a click on the node goes (an anchor on the same page). */
  href?: string;
}

const W = 170;
const H = 58;
const GAP_X = 70;
const GAP_Y = 22;
const PAD = 14;

interface Placed extends DagNode {
  x: number;
  y: number;
  layer: number;
}

interface Edge {
  from: Placed;
  to: Placed;
  /** A group's sequence (dashed), not a need. */
  seq: boolean;
}

/** Lays the nodes out: layer = longest path from a step without needs; order in a layer by
 *  the mean position of what it needs (barycentre), else as written. */
export function layout(nodes: DagNode[]): { placed: Placed[]; edges: Edge[]; width: number; height: number } {
  const main = nodes.filter((n) => n.group === "steps");
  const byId = new Map(main.map((n) => [n.id, n]));
  const layerOf = new Map<string, number>();
  const visiting = new Set<string>();
  const depth = (id: string): number => {
    const known = layerOf.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // a cycle (the server refuses them): drawn flat
    visiting.add(id);
    const n = byId.get(id);
    let d = 0;
    for (const need of n?.needs ?? []) if (byId.has(need)) d = Math.max(d, depth(need) + 1);
    visiting.delete(id);
    layerOf.set(id, d);
    return d;
  };
  main.forEach((n) => depth(n.id));
  let next = main.length ? Math.max(...main.map((n) => layerOf.get(n.id) ?? 0)) + 1 : 0;
  const extra: { n: DagNode; layer: number }[] = [];
  for (const group of ["on_failure", "always"]) {
    for (const n of nodes.filter((x) => x.group === group)) extra.push({ n, layer: next++ });
  }
  const layers: DagNode[][] = [];
  const put = (n: DagNode, l: number) => (layers[l] ??= []).push(n);
  main.forEach((n) => put(n, layerOf.get(n.id) ?? 0));
  extra.forEach(({ n, layer }) => put(n, layer));

  // Order within layers by barycentre of the needs' rows (one sweep is enough for small graphs).
  const row = new Map<string, number>();
  layers.forEach((ls, l) => {
    if (l > 0) {
      const key = (n: DagNode) => {
        const rows = n.needs.map((x) => row.get(x)).filter((r): r is number => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Number.MAX_SAFE_INTEGER;
      };
      ls.sort((a, b) => key(a) - key(b));
    }
    ls.forEach((n, i) => row.set(n.id, i));
  });

  const tallest = Math.max(1, ...layers.map((l) => l?.length ?? 0));
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const placed: Placed[] = [];
  const at = new Map<DagNode, Placed>();
  layers.forEach((ls, l) => {
    const colH = ls.length * H + (ls.length - 1) * GAP_Y;
    const top = (height - colH) / 2;
    ls.forEach((n, i) => {
      const p = { ...n, layer: l, x: PAD + l * (W + GAP_X), y: top + i * (H + GAP_Y) };
      placed.push(p);
      at.set(n, p);
    });
  });
  const placedById = new Map(placed.filter((p) => p.group === "steps").map((p) => [p.id, p]));
  const edges: Edge[] = [];
  for (const p of placed) {
    if (p.group !== "steps") continue;
    for (const need of p.needs) {
      const from = placedById.get(need);
      if (from) edges.push({ from, to: p, seq: false });
    }
  }
  for (let i = 1; i < extra.length; i++) {
    if (extra[i].n.group === extra[i - 1].n.group) {
      edges.push({ from: at.get(extra[i - 1].n)!, to: at.get(extra[i].n)!, seq: true });
    }
  }
  const width = PAD * 2 + Math.max(1, layers.length) * W + Math.max(0, layers.length - 1) * GAP_X;
  return { placed, edges, width, height };
}

/** Cuts a text to about `n` characters (the whole text is the node's tooltip). */
const cut = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

function stripExpr(c: string) {
  const m = /^\s*\$\{\{([\s\S]*)\}\}\s*$/.exec(c);
  return (m ? m[1] : c).trim();
}

export function Dag({ nodes, label }: { nodes: DagNode[]; label: string }) {
  const { placed, edges, width, height } = layout(nodes);
  return (
    <div class="dag-wrap">
      <svg
        class="dag"
        role="img"
        aria-label={label}
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        data-testid="dag"
      >
        <defs>
          <marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L10,5 L0,10 z" class="dag-arrowhead" />
          </marker>
        </defs>
        {edges.map((e) => {
          const x1 = e.from.x + W;
          const y1 = e.from.y + H / 2;
          const x2 = e.to.x;
          const y2 = e.to.y + H / 2;
          const mx = (x1 + x2) / 2;
          const cls = `dag-edge${e.seq ? " seq" : ""}${e.to.condition ? " cond" : ""}${e.from.state ? ` from-${e.from.state}` : ""}`;
          return (
            <path
              class={cls}
              data-edge={`${e.from.id}->${e.to.id}`}
              d={`M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`}
              marker-end="url(#dag-arrow)"
            />
          );
        })}
        {placed.map((n) => {
          const title = [
            `${n.id} (${n.kind}${n.group !== "steps" ? `, ${n.group.replace("_", " ")}` : ""})`,
            n.state ? `state: ${n.state}` : "",
            n.needs.length && n.group === "steps" ? `needs: ${n.needs.join(", ")}` : "",
            n.condition ? `if ${stripExpr(n.condition)}` : "",
            n.note ?? "",
          ]
            .filter(Boolean)
            .join("\n");
          const sub = n.group !== "steps" ? `${n.kind} · ${n.group.replace("_", " ")}` : n.kind;
          const body = (
            <g
              class={`dag-node${n.state ? ` s-${n.state}` : ""}${n.group !== "steps" ? " extra" : ""}`}
              data-step={n.id}
              data-state={n.state}
              transform={`translate(${n.x},${n.y})`}
            >
              <title>{title}</title>
              <rect width={W} height={H} rx="6" />
              <text x="10" y="19" class="dag-id">
                {cut(n.id, 18)}
              </text>
              <text x="10" y="35" class="dag-kind">
                {cut(n.state ? `${sub} · ${n.state}` : sub, 26)}
              </text>
              {(n.condition || n.note) && (
                <text x="10" y="50" class={n.condition ? "dag-cond" : "dag-kind"}>
                  {n.condition ? cut(`if ${stripExpr(n.condition)}`, 22) : cut(n.note ?? "", 26)}
                </text>
              )}
            </g>
          );
          return n.href ? (
            <a href={n.href} aria-label={`Step ${n.id}${n.state ? `, ${n.state}` : ""}`}>
              {body}
            </a>
          ) : (
            body
          );
        })}
      </svg>
    </div>
  );
}
