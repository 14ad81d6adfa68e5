// A scripted OpenAI-compatible chat-completions server for the Ask page's tests: each request
// is answered by the kind of answer it asks for — the JSON Schema herd names in
// `response_format` (`herd_plan`, `herd_validation`, `herd_alternative`). Plans and
// alternatives come from queues the test fills; a judgement follows the exit code the
// validation prompt reports (0: valid, else invalid), unless one is queued.
import http from "node:http";

const KINDS = { herd_plan: "plan", herd_validation: "validation", herd_alternative: "alternative" };

export function kindOf(body) {
  const name = body?.response_format?.json_schema?.name;
  if (KINDS[name]) return KINDS[name];
  // No schema named: read the prompt.
  const text = JSON.stringify(body?.messages ?? []).toLowerCase();
  if (text.includes("alternative")) return "alternative";
  if (text.includes("exit code") || text.includes("judge")) return "validation";
  return "plan";
}

/** Judges from the prompt: "exit code 0" is valid. */
function judgeFromPrompt(body) {
  const text = (body?.messages ?? []).map((m) => m.content).join("\n");
  const ok = /It ended with exit code 0\./.test(text);
  return JSON.stringify({
    is_valid: ok,
    confidence: 0.9,
    reason: ok ? "the command exited 0 <b>as expected</b>" : "the command failed",
    suggested_fix: null,
    should_retry: false,
  });
}

export async function startModel() {
  const queues = { plan: [], validation: [], alternative: [] };
  const asked = [];
  const server = http.createServer((req, res) => {
    let data = "";
    req.on("data", (d) => (data += d));
    req.on("end", () => {
      let body = {};
      try {
        body = JSON.parse(data || "{}");
      } catch {
        /* not JSON: answered as a plan request */
      }
      const kind = kindOf(body);
      asked.push({ kind, body });
      let content = queues[kind].shift();
      if (content === undefined) content = kind === "validation" ? judgeFromPrompt(body) : "";
      if (typeof content !== "string") content = JSON.stringify(content);
      const answer = JSON.stringify({
        id: "c1",
        object: "chat.completion",
        model: "test",
        choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content } }],
        usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 },
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) });
      res.end(answer);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/v1`,
    asked,
    /** The next plan: `{summary, steps}` (steps as the model writes them). */
    plan: (p) => queues.plan.push(p),
    judge: (j) => queues.validation.push(j),
    alternative: (a) => queues.alternative.push(a),
    close: () => new Promise((r) => server.close(r)),
  };
}
