//! Systems herd calls, for the tests of `http` and `notify` steps: a small HTTP server whose
//! answers a test scripts ([`HttpCallee`]: fail N times then recover, 429 with `Retry-After`,
//! record every request), and a real SMTP server ([`SmtpServer`]: Python's aiosmtpd, writing
//! what it receives to a maildir).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result, wait_until};

/// One request as the callee saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// When it arrived, by the callee's clock.
    pub at: Instant,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    failures_left: AtomicU32,
    stop: AtomicBool,
}

/// An HTTP/1.1 server on 127.0.0.1 (one thread, one connection at a time, `Connection:
/// close`). By path:
/// - `/flaky`: 500 while failures are left ([`HttpCallee::fail_next`]), then 200 with
///   `{"items": [{"id": "abc", "n": 1}, {"id": "def", "n": 2}], "ok": true}`;
/// - `/limited`: 429 with `Retry-After: 1` to its first request, then 200 `{"ok": true}`;
/// - `/teapot`: 418;
/// - anything else: 200 `{"received": true}`.
pub struct HttpCallee {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpCallee {
    pub fn start() -> Result<HttpCallee> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| Error::Io { what, source }
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind the HTTP callee"))?;
        let addr = listener
            .local_addr()
            .map_err(io("the HTTP callee's address"))?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(&st, conn);
                }
            }
        });
        Ok(HttpCallee {
            url: format!("http://{addr}"),
            addr,
            state,
            thread: Some(thread),
        })
    }

    /// `/flaky` answers 500 to its next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.state.failures_left.store(n, Ordering::SeqCst);
    }

    /// The requests to `path` so far, in order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        let r = self
            .state
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for HttpCallee {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(state: &State, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            headers.push((name, value));
        }
        if headers.len() > 200 {
            break;
        }
    }
    let mut body = vec![0; length.min(16 << 20)];
    reader.read_exact(&mut body)?;
    let (first, failing) = {
        let mut r = state
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = !r.iter().any(|x| x.path == path);
        r.push(Received {
            method,
            path: path.clone(),
            at: Instant::now(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let left = state.failures_left.load(Ordering::SeqCst);
        let failing = path == "/flaky" && left > 0;
        if failing {
            state.failures_left.store(left - 1, Ordering::SeqCst);
        }
        (first, failing)
    };
    let json = "application/json";
    let (status, extra, ctype, text) = match path.as_str() {
        "/flaky" if failing => (
            "500 Internal Server Error",
            "",
            "text/plain",
            "down for now".to_string(),
        ),
        "/flaky" => (
            "200 OK",
            "",
            json,
            r#"{"items": [{"id": "abc", "n": 1}, {"id": "def", "n": 2}], "ok": true}"#.to_string(),
        ),
        "/limited" if first => (
            "429 Too Many Requests",
            "Retry-After: 1\r\n",
            "text/plain",
            "slow down".to_string(),
        ),
        "/limited" => ("200 OK", "", json, r#"{"ok": true}"#.to_string()),
        "/teapot" => (
            "418 I'm a teapot",
            "",
            "text/plain",
            "short and stout".to_string(),
        ),
        _ => ("200 OK", "", json, r#"{"received": true}"#.to_string()),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

/// The Python with aiosmtpd: `HERD_AIOSMTPD_PYTHON` (scripts/test.sh sets it), else the
/// virtual environment scripts/test.sh makes under `~/.cache/herd-test`.
pub fn aiosmtpd_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HERD_AIOSMTPD_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    let p = cache.join("herd-test/aiosmtpd-1.4.6/bin/python");
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Unexpected(
            "aiosmtpd is not installed: scripts/test.sh installs it, or set HERD_AIOSMTPD_PYTHON to a Python that has it".into(),
        ))
    }
}

/// A real SMTP server (aiosmtpd) on a free port of 127.0.0.1, writing each message it
/// receives to `DIR/maildir/new/` and its log to `DIR/aiosmtpd.log`. Killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub addr: SocketAddr,
    maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(dir: &Path) -> Result<SmtpServer> {
        Self::start_with(dir, &[])
    }

    /// Offering STARTTLS with this certificate chain and key (PEM files).
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Result<SmtpServer> {
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        Self::start_with(dir, &["--tlscert", &cert, "--tlskey", &key])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Result<SmtpServer> {
        let maildir = dir.join("maildir");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|source| Error::Io {
                what: "find a free port for aiosmtpd".into(),
                source,
            })?;
        let python = aiosmtpd_python()?;
        let log_path = dir.join("aiosmtpd.log");
        let log = std::fs::File::create(&log_path).map_err(|source| Error::Io {
            what: format!("create {}", log_path.display()),
            source,
        })?;
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                what: format!("aiosmtpd ({})", python.display()),
                source,
            })?;
        let mut server = SmtpServer {
            child,
            addr,
            maildir,
        };
        let listening = wait_until(Duration::from_secs(20), "aiosmtpd to listen", || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(Error::Exited {
                what: "aiosmtpd".into(),
                status: status.to_string(),
                log: log(),
            });
        }
        if listening.is_err() {
            return Err(Error::Timeout {
                what: format!("aiosmtpd to listen on {addr}"),
                after: Duration::from_secs(20),
                log: log(),
            });
        }
        Ok(server)
    }

    /// Every message received so far (as written, CRLF or LF line ends).
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
