//! A real LangFlow for tests: `langflow run` (the program at `HERD_LANGFLOW`, else the virtual
//! environment scripts/test.sh makes) on a free port of 127.0.0.1, backend only, with its
//! database, configuration, caches and logs in a temporary directory of its own, auto-login on
//! and telemetry off (it needs no network). Once it is healthy: an API key made through
//! auto-login, and a flow `echo` (Chat Input → Chat Output, built from the component
//! templates this LangFlow serves at `/api/v1/all`). Its process group is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result, io, spawn};
use crate::http::http_request;
use crate::process::{log_file, tail};

/// The LangFlow version scripts/test.sh installs.
pub const LANGFLOW_VERSION: &str = "1.13.0";

/// How long LangFlow may take to start (about 20 s on a quiet 2-core machine, the first start
/// of a fresh database included).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The `langflow` program: `HERD_LANGFLOW` (scripts/test.sh sets it), else the virtual
/// environment scripts/test.sh makes under `~/.cache/herd-test`.
pub fn langflow_program() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HERD_LANGFLOW") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    let p = cache.join(format!(
        "herd-test/langflow-{LANGFLOW_VERSION}/bin/langflow"
    ));
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Unexpected(format!(
            "LangFlow is not installed: scripts/test.sh installs it, or set HERD_LANGFLOW to a \
             `langflow` program (pip install langflow-base=={LANGFLOW_VERSION})"
        )))
    }
}

/// A running LangFlow with an API key and the flow `echo`.
pub struct LangFlow {
    child: Child,
    url: String,
    api_key: String,
    flow_id: String,
    endpoint_name: String,
    /// `ChatInput` and `ChatOutput` as this LangFlow serves them.
    chat_input: Value,
    chat_output: Value,
    log: PathBuf,
    /// How long it took to answer `/health`.
    pub started_in: Duration,
    _dir: tempfile::TempDir,
}

impl LangFlow {
    pub fn start() -> Result<LangFlow> {
        let program = langflow_program()?;
        let dir = tempfile::Builder::new()
            .prefix("herd-langflow-")
            .tempdir()
            .map_err(io("create a directory for LangFlow"))?;
        let d = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("find a free port for LangFlow"))?
            .port();
        let log = d.join("langflow.out");
        let out = log_file(&log, false)?;
        let err = out.try_clone().map_err(io("open LangFlow's log"))?;
        let mut cmd = Command::new(&program);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LANGFLOW_") {
                cmd.env_remove(k);
            }
        }
        let path = |p: &str| d.join(p).to_string_lossy().into_owned();
        cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--backend-only", "--no-open-browser", "--workers", "1"])
            .env("LANGFLOW_AUTO_LOGIN", "true")
            .env("LANGFLOW_CONFIG_DIR", path("config"))
            .env(
                "LANGFLOW_DATABASE_URL",
                format!("sqlite:///{}", path("langflow.db")),
            )
            .env("LANGFLOW_KNOWLEDGE_BASES_DIR", path("knowledge_bases"))
            .env("LANGFLOW_LOG_FILE", path("langflow.log"))
            .env("LANGFLOW_TELEMETRY_WRITER_OUTBOX_DIR", path("outbox"))
            .env("XDG_CACHE_HOME", path("cache"))
            .env("DO_NOT_TRACK", "true")
            .env("LANGFLOW_DO_NOT_TRACK", "true")
            .env("LANGFLOW_CREATE_STARTER_PROJECTS", "false")
            .env("LANGFLOW_MCP_COMPOSER_ENABLED", "false")
            .env("LANGFLOW_ADD_PROJECTS_TO_MCP_SERVERS", "false")
            .env("LANGFLOW_STORE", "false")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(spawn(format!("LangFlow ({})", program.display())))?;
        let mut lf = LangFlow {
            child,
            url: format!("http://127.0.0.1:{port}"),
            api_key: String::new(),
            flow_id: String::new(),
            endpoint_name: "echo".to_string(),
            chat_input: Value::Null,
            chat_output: Value::Null,
            log,
            started_in: Duration::ZERO,
            _dir: dir,
        };
        lf.wait_healthy()?;
        lf.api_key = lf.make_api_key()?;
        lf.load_templates()?;
        lf.flow_id = lf.create_echo_flow("echo", "echo")?;
        Ok(lf)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The id of the flow `echo`.
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// The endpoint name of the flow `echo`.
    pub fn endpoint_name(&self) -> &str {
        &self.endpoint_name
    }

    /// The end of LangFlow's output, for a test's failure message.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Exited {
                    what: "LangFlow".into(),
                    status: status.to_string(),
                    log: tail(&self.log),
                });
            }
            if let Ok((200, _)) = http_request(&self.url, "GET", "/health", &[], None) {
                self.started_in = start.elapsed();
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("LangFlow to answer {}/health", self.url),
                    after: START_TIMEOUT,
                    log: tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A call that must answer `want`; its JSON.
    fn call(
        &self,
        method: &str,
        path: &str,
        auth: (&str, &str),
        body: Option<&Value>,
        want: u16,
    ) -> Result<Value> {
        let body = body.map(Value::to_string);
        let (status, got) = http_request(
            &self.url,
            method,
            path,
            &[auth],
            body.as_deref().map(str::as_bytes),
        )?;
        if status != want {
            return Err(Error::Unexpected(format!(
                "LangFlow: {method} {path} answered {status} (expected {want}): {}",
                String::from_utf8_lossy(&got[..got.len().min(2000)])
            )));
        }
        serde_json::from_slice(&got)
            .map_err(|e| Error::Unexpected(format!("LangFlow: {method} {path}: not JSON ({e})")))
    }

    fn key(&self) -> (&str, &str) {
        ("x-api-key", &self.api_key)
    }

    /// Auto-login's access token, then an API key made with it.
    fn make_api_key(&self) -> Result<String> {
        let login = self.call("GET", "/api/v1/auto_login", ("Accept", "*/*"), None, 200)?;
        let token = login["access_token"]
            .as_str()
            .ok_or_else(|| Error::Unexpected(format!("LangFlow: auto_login answered {login}")))?;
        let bearer = format!("Bearer {token}");
        let created = self.call(
            "POST",
            "/api/v1/api_key/",
            ("Authorization", &bearer),
            Some(&json!({"name": "herd-test"})),
            200,
        )?;
        created["api_key"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Unexpected(format!("LangFlow: api_key answered {created}")))
    }

    fn load_templates(&mut self) -> Result<()> {
        let all = self.call("GET", "/api/v1/all", self.key(), None, 200)?;
        let find = |kind: &str| {
            all.as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .find_map(|category| category.get(kind))
                .cloned()
                .ok_or_else(|| {
                    Error::Unexpected(format!("LangFlow: /api/v1/all has no component {kind}"))
                })
        };
        self.chat_input = find("ChatInput")?;
        self.chat_output = find("ChatOutput")?;
        Ok(())
    }

    /// Creates a flow Chat Input → Chat Output named `name` with this endpoint name; its id.
    pub fn create_echo_flow(&self, name: &str, endpoint_name: &str) -> Result<String> {
        self.create_flow(name, endpoint_name, self.chat_output.clone())
    }

    /// Creates a flow like `echo` whose Chat Output raises `boom from herd` when it runs; its id.
    pub fn create_failing_flow(&self, name: &str, endpoint_name: &str) -> Result<String> {
        let mut output = self.chat_output.clone();
        let code = output
            .pointer("/template/code/value")
            .and_then(Value::as_str)
            .unwrap_or("");
        let method = "    async def message_response(self) -> Message:\n";
        if !code.contains(method) {
            return Err(Error::Unexpected(
                "LangFlow: ChatOutput's code has no message_response to make fail".into(),
            ));
        }
        let failing = code.replacen(
            method,
            &format!("{method}        raise ValueError(\"boom from herd\")\n"),
            1,
        );
        if let Some(v) = output.pointer_mut("/template/code/value") {
            *v = Value::String(failing);
        }
        self.create_flow(name, endpoint_name, output)
    }

    /// Chat Input → `output` (a ChatOutput template) through `POST /api/v1/flows/`.
    fn create_flow(&self, name: &str, endpoint_name: &str, output: Value) -> Result<String> {
        let (ci, co) = ("ChatInput-herd1", "ChatOutput-herd2");
        let node = |id: &str, kind: &str, template: &Value, x: u32| {
            json!({"id": id, "type": "genericNode", "position": {"x": x, "y": 0},
                   "data": {"id": id, "type": kind, "node": template}})
        };
        let field = &output["template"]["input_value"];
        let source = json!({"dataType": "ChatInput", "id": ci, "name": "message",
                            "output_types": ["Message"]});
        let target = json!({"fieldName": "input_value", "id": co,
                            "inputTypes": field.get("input_types").cloned().unwrap_or(json!(["Message"])),
                            "type": field.get("type").cloned().unwrap_or(json!("str"))});
        // The handles as the editor writes them: JSON with `œ` for `"`.
        let handle = |v: &Value| v.to_string().replace('"', "œ");
        let edge = json!({"id": format!("reactflow__edge-{ci}-{co}"), "source": ci, "target": co,
                          "sourceHandle": handle(&source), "targetHandle": handle(&target),
                          "data": {"sourceHandle": source, "targetHandle": target}});
        let flow = json!({
            "name": name,
            "description": "Chat Input to Chat Output",
            "endpoint_name": endpoint_name,
            "data": {"nodes": [node(ci, "ChatInput", &self.chat_input, 0),
                               node(co, "ChatOutput", &output, 400)],
                     "edges": [edge], "viewport": {"x": 0, "y": 0, "zoom": 1}},
        });
        let created = self.call("POST", "/api/v1/flows/", self.key(), Some(&flow), 201)?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Unexpected(format!("LangFlow: flows answered {created}")))
    }

    /// Deletes a flow (as removing it in LangFlow does).
    pub fn delete_flow(&self, id: &str) -> Result<()> {
        self.call(
            "DELETE",
            &format!("/api/v1/flows/{id}"),
            self.key(),
            None,
            200,
        )
        .map(|_| ())
    }
}

impl Drop for LangFlow {
    fn drop(&mut self) {
        // Its workers are its children, in its process group.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
