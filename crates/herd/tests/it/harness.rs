//! Starts real `herd` processes (server, agents, CLI) in a temp dir for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

pub fn herd() -> Command {
    let mut c = Command::new(HERD);
    c.env_remove("HERD_SERVER")
        .env_remove("HERD_API_KEY")
        .env_remove("HERD_CA_SHA256")
        .env("HERD_LOG", "info")
        .env("RUST_BACKTRACE", "0");
    c
}

/// Waits for `f` to return Some, polling; panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a child's stdout lines on a thread.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

pub struct Server {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub listen: String,
    pub url: String,
    pub key: String,
    pub ca_sha256: Option<String>,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// A server on 127.0.0.1 with a free port, data in `dir/server`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, "127.0.0.1:0", &[])
    }

    pub fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut s = Server {
            dir: dir.to_path_buf(),
            data_dir: dir.join("server"),
            listen: listen.to_string(),
            url: String::new(),
            key: String::new(),
            ca_sha256: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut child = herd()
            .arg("server")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herd server");
        let rx = line_reader(&mut child);
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start; log: {}", self.log()));
        let url = first
            .strip_prefix("herd server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        // Later restarts reuse the same port.
        if let Some(port) = url.rsplit(':').next() {
            let host = self
                .listen
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default();
            self.listen = format!("{host}:{port}");
        }
        self.url = url;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            if let Some(k) = line.strip_prefix("admin API key (shown once; keep it safe): ") {
                self.key = k.to_string();
            }
            if let Some(fp) =
                line.strip_prefix("CA fingerprint (pin with --ca-sha256 / HERD_CA_SHA256): ")
            {
                self.ca_sha256 = Some(fp.to_string());
            }
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The CLI, configured for this server through the environment.
    pub fn cli(&self) -> Command {
        let mut c = herd();
        c.env("HERD_CONFIG", self.dir.join("no-config.toml"))
            .env("HERD_SERVER", &self.url)
            .env("HERD_API_KEY", &self.key);
        if let Some(fp) = &self.ca_sha256 {
            c.env("HERD_CA_SHA256", fp);
        }
        c
    }

    /// Runs the CLI with `args`, returning its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run herd")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "herd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "herd {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn join_token(&self, uses: u32) -> String {
        let v = self.json(&["token", "create", "--uses", &uses.to_string(), "--json"]);
        v["token"].as_str().expect("token").to_string()
    }

    /// Starts an agent named `name` with labels, in `dir/agents/<name>`.
    pub fn agent(&self, name: &str, labels: &[&str]) -> Agent {
        let token = self.join_token(1);
        Agent::start(self, name, labels, &token, None)
    }

    pub fn wait_online(&self, names: &[&str]) {
        wait_for(
            Duration::from_secs(30),
            &format!("agents {names:?} online"),
            || {
                let out = self.run(&["agents", "--json"]);
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                let all = names.iter().all(|n| {
                    v.as_array().is_some_and(|a| {
                        a.iter()
                            .any(|x| x["name"] == *n && x["online"].as_bool() == Some(true))
                    })
                });
                all.then_some(())
            },
        );
    }

    /// GET an API path with the admin key (raw body).
    pub fn api_get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(&self.url, path, Some(&self.key))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal HTTP/1.1 GET over a plain TCP socket (tests of plain-http servers only).
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).expect("connect");
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head")
        + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = buf[head_end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

pub struct Agent {
    pub name: String,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// `wrap`: an optional command prefix (e.g. `ip netns exec NS`).
    pub fn start(
        server: &Server,
        name: &str,
        labels: &[&str],
        token: &str,
        wrap: Option<&[&str]>,
    ) -> Agent {
        let state_dir = server.dir.join("agents").join(name);
        std::fs::create_dir_all(&state_dir).expect("agent dir");
        let log = server.dir.join(format!("agent-{name}.log"));
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            server.url.clone(),
            "--token".into(),
            token.into(),
            "--name".into(),
            name.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
        ];
        if let Some(fp) = &server.ca_sha256 {
            args.push("--ca-sha256".into());
            args.push(fp.clone());
        }
        for l in labels {
            args.push("--label".into());
            args.push(l.to_string());
        }
        let mut cmd = match wrap {
            Some(w) => {
                let mut c = Command::new(w[0]);
                c.args(&w[1..]).arg(HERD);
                c
            }
            None => herd(),
        };
        cmd.env("HERD_LOG", "info").env("RUST_BACKTRACE", "0");
        let logf = std::fs::File::create(&log).expect("agent log");
        let child = cmd
            .args(&args)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn herd agent");
        Agent {
            name: name.to_string(),
            state_dir,
            log,
            child: Some(child),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the agent process to exit; returns its exit status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// No process whose command line contains `needle` (zombies have none), on two looks 20 ms
/// apart: a process in the middle of an exec shows an empty command line for a moment.
pub fn no_process_with(needle: &str) -> bool {
    if !no_process_now(needle) {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    no_process_now(needle)
}

fn no_process_now(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    for e in dir.flatten() {
        let p = e.path().join("cmdline");
        if let Ok(c) = std::fs::read(&p) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) && !c.contains("cargo") && !c.contains("/it-") {
                return false;
            }
        }
    }
    true
}

/// A network namespace with a veth pair to the host; removed on drop.
pub struct NetNs {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
}

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", stderr(&out).trim()))
    }
}

impl NetNs {
    /// None when this process may not create namespaces (not root).
    pub fn create() -> Option<NetNs> {
        let pid = std::process::id();
        let name = format!("herd-it-{pid}");
        if let Err(e) = ip(&["netns", "add", &name]) {
            eprintln!("SKIPPED: cannot create a network namespace (need root): {e}");
            return None;
        }
        // Another test run may be using the same subnet or interface names: pick free ones.
        let addrs = Command::new("ip")
            .args(["-br", "addr"])
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_default();
        let links = Command::new("ip")
            .args(["-br", "link"])
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_default();
        let x = (0..200)
            .map(|i| (pid + i) % 200 + 20)
            .find(|x| !addrs.contains(&format!("10.213.{x}.")))
            .expect("a free 10.213.X.0/30 subnet");
        let idx = (0..10000)
            .map(|i| (pid + i) % 10000)
            .find(|i| !links.contains(&format!("hv{i}@")) && !links.contains(&format!("hv{i} ")))
            .expect("a free veth name");
        let ns = NetNs {
            name,
            host_if: format!("hv{idx}"),
            host_ip: format!("10.213.{x}.1"),
        };
        let ns_if = format!("nv{idx}");
        let ns_ip = format!("10.213.{x}.2/30");
        let host_cidr = format!("{}/30", ns.host_ip);
        let n = ns.name.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ],
            vec!["link", "set", &ns_if, "netns", n],
            vec!["addr", "add", &host_cidr, "dev", &ns.host_if],
            vec!["link", "set", &ns.host_if, "up"],
            vec!["-n", n, "addr", "add", &ns_ip, "dev", &ns_if],
            vec!["-n", n, "link", "set", &ns_if, "up"],
            vec!["-n", n, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(&step).unwrap_or_else(|e| panic!("netns setup: {e}"));
        }
        Some(ns)
    }

    pub fn set_link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]).expect("toggle veth");
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A simulated fleet (`herd bench fleet`): N light agents in one process, each with its own
/// identity and connection. Killed on drop.
pub struct Fleet {
    child: Child,
    out: PathBuf,
    log: PathBuf,
    agents: usize,
}

impl Fleet {
    pub fn start(server: &Server, agents: usize, token: &str) -> Fleet {
        let out = server.dir.join("fleet.out");
        let log = server.dir.join("fleet.log");
        let mut args: Vec<String> = vec![
            "bench".into(),
            "fleet".into(),
            "--server".into(),
            server.url.clone(),
            "--token".into(),
            token.into(),
            "--agents".into(),
            agents.to_string(),
            "--state-file".into(),
            server.dir.join("fleet.json").display().to_string(),
        ];
        if let Some(fp) = &server.ca_sha256 {
            args.push("--ca-sha256".into());
            args.push(fp.clone());
        }
        let child = herd()
            .args(&args)
            .env("HERD_LOG", "warn")
            .stdout(std::fs::File::create(&out).expect("fleet out"))
            .stderr(std::fs::File::create(&log).expect("fleet log"))
            .spawn()
            .expect("spawn herd bench fleet");
        Fleet {
            child,
            out,
            log,
            agents,
        }
    }

    /// Waits until every simulated agent has its session.
    pub fn wait_ready(&self, timeout: Duration) {
        let want = format!("fleet: {} agents connected", self.agents);
        let deadline = Instant::now() + timeout;
        loop {
            let out = std::fs::read_to_string(&self.out).unwrap_or_default();
            if out.contains(&want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "simulated fleet not ready after {timeout:?}; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
