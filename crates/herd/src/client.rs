//! The HTTP and WebSocket client of the herd API, used by every CLI command: typed calls
//! (`get`, `post`) whose bodies and answers are herd-api types, raw output downloads, and
//! the attach WebSocket. A failed call becomes the server's one-line error.
//!
//! Every unary call is bounded by `HERD_TIMEOUT` (connect and answer, default 30 s); a server
//! that cannot be reached or stops answering is a [`Lost`] error, which the CLI exits 255
//! on (as ssh does), apart from any code a remote command ends with. TLS is set up only for
//! `https://` servers, trusting the pinned CA alone; a plain `http://` client loads nothing.
//! The HTTP client is built on its first call: `herd run` speaks one WebSocket only.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use herd_api::ErrorBody;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{self, ClientConfig};

pub struct Client {
    pub base: String,
    key: String,
    /// Built on first use (see [`Client::http`]).
    http: std::sync::OnceLock<reqwest::Client>,
    /// The TLS of HTTP calls (h2 or HTTP/1.1) to an `https://` server.
    http_tls: Option<rustls::ClientConfig>,
    /// The TLS of WebSockets (HTTP/1.1) to an `https://` server.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `HERD_TIMEOUT`: connect and answer of a unary call, a WebSocket's handshake, and how
    /// long a live stream waits for the server to answer its pings.
    pub timeout: Duration,
}

/// The server could not be reached, or stopped answering: the CLI exits 255.
#[derive(Debug)]
pub struct Lost(pub String);

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lost {}

/// Default of `HERD_TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `HERD_TIMEOUT` (a duration such as `30s`), or its default.
pub fn timeout_from_env() -> Result<Duration> {
    match std::env::var("HERD_TIMEOUT") {
        Ok(v) if !v.trim().is_empty() => match herd_core::parse_duration(v.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => bail!("bad HERD_TIMEOUT {v:?}: must be more than 0 — e.g. HERD_TIMEOUT=30s"),
            Err(e) => bail!("bad HERD_TIMEOUT {v:?}: {e} — e.g. HERD_TIMEOUT=30s"),
        },
        _ => Ok(DEFAULT_TIMEOUT),
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Client {
    pub fn from_config(cfg: &ClientConfig) -> Result<Client> {
        let (base, key) = config::resolve(cfg)?;
        let timeout = timeout_from_env()?;
        let mut tls = None;
        let mut http_tls = None;
        if base.starts_with("https://") {
            let pin = cfg.ca_sha256.clone().ok_or_else(|| {
                anyhow!("{base} uses TLS but no CA pin is configured — set HERD_CA_SHA256 (printed by the server at start)")
            })?;
            let c = herd_tls::client_config(
                &herd_tls::Trust::Pinned(pin),
                &[herd_tls::ALPN_H2, herd_tls::ALPN_HTTP11],
            )?;
            http_tls = Some((*c).clone());
            let ws = herd_tls::client_config(
                &herd_tls::Trust::Pinned(cfg.ca_sha256.clone().unwrap_or_default()),
                &[herd_tls::ALPN_HTTP11],
            )?;
            tls = Some(ws);
        } else if !base.starts_with("http://") {
            bail!("bad server URL {base:?}: expected http://HOST:PORT or https://HOST:PORT");
        } else {
            crate::plaintext::warn(&base, "the API key");
        }
        Ok(Client {
            base,
            key,
            http: std::sync::OnceLock::new(),
            http_tls,
            tls,
            timeout,
        })
    }

    /// The HTTP client, built on the first call.
    fn http(&self) -> Result<&reqwest::Client> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        // `read_timeout` bounds each read of a body (a download may take long, but never
        // waits that long for a byte); unary calls are bounded whole in `request`.
        let builder = reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .no_proxy();
        let tls = match &self.http_tls {
            Some(c) => c.clone(),
            // Plain HTTP: a TLS config of no roots (reqwest would otherwise load the whole
            // system CA store for every client, which costs more than a call on loopback).
            None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .context("cannot set up the HTTP client")?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let c = builder
            .tls_backend_preconfigured(tls)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(self.http.get_or_init(|| c))
    }

    /// The one line for a call that got no answer: a pin mismatch, plain HTTP against a TLS
    /// server, a timeout or an unreachable server (the last two are [`Lost`]).
    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        if let Some(m) = herd_tls::pin_mismatch(&e) {
            return anyhow!("cannot trust herd server {}: {m}", self.base);
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg = format!("{msg}: {text}");
            }
            src = s.source();
        }
        if e.is_timeout() {
            return anyhow::Error::new(Lost(format!(
                "no answer from herd server {} within {}: {msg} — is it overloaded or stopped? (HERD_TIMEOUT sets how long to wait)",
                self.base,
                herd_core::format_duration(self.timeout)
            )));
        }
        if self.base.starts_with("http://") && !e.is_connect() && speaks_tls(&msg) {
            return anyhow::Error::new(Lost(format!(
                "herd server {} did not answer plain HTTP: {msg} — it serves TLS: use https://{} (and set HERD_CA_SHA256)",
                self.base,
                self.base.trim_start_matches("http://")
            )));
        }
        anyhow::Error::new(Lost(format!(
            "cannot reach herd server {}: {msg} — is `herd server` (or `herd up`) running? check HERD_SERVER",
            self.base
        )))
    }

    /// One call: `body` as JSON (if any), the answer read as `T`. A failed call is the
    /// server's one-line error.
    async fn request<B, T>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http()?
            .request(method, &url)
            .bearer_auth(&self.key)
            .timeout(self.timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            bail!("{}", self.error_message(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                anyhow!(
                    "{} is not a herd server (it answered {path} with something other than JSON) — check HERD_SERVER",
                    self.base
                )
            } else {
                anyhow!(
                    "unexpected answer from herd server {} to {path}: {e} — is the server the same version as this CLI?",
                    self.base
                )
            }
        })
    }

    /// `GET path`, answered with a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request::<(), T>(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON, answered with a `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with `body` as JSON, answered with a `T`.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`, answered with a `T`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request::<(), T>(Method::DELETE, path, None).await
    }

    /// `POST path` of an action that takes no parameters (an empty JSON object).
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.post(path, &serde_json::Map::new()).await
    }

    /// `PUT path?offset=N` with the file's bytes from `offset` as the body, answered with a `T`.
    pub async fn put_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &std::path::Path,
        offset: u64,
    ) -> Result<T> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let body = futures::stream::unfold(f, |mut f| async move {
            let mut buf = bytes::BytesMut::with_capacity(1 << 20);
            match f.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok::<_, std::io::Error>(buf.freeze()), f)),
                Err(e) => Some((Err(e), f)),
            }
        });
        let url = format!("{}{path}?offset={offset}", self.base);
        let resp = self
            .http()?
            .put(&url)
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            bail!("{}", self.error_message(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "unexpected answer from herd server {} to {path}: {e} — is the server the same version as this CLI?",
                self.base
            )
        })
    }

    /// `GET path` answered with a success, its body unread (a file to stream).
    pub async fn open(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http()?
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.bytes().await.unwrap_or_default();
            bail!("{}", self.error_message(status, &bytes));
        }
        Ok(resp)
    }

    /// A broken body stream as the one line of [`Client::unreachable`].
    pub fn broken(&self, e: reqwest::Error) -> anyhow::Error {
        self.unreachable(e)
    }

    /// Raw bytes of a response (task output), streamed to `sink`.
    pub async fn download(&self, path: &str, sink: &mut (dyn std::io::Write + Send)) -> Result<()> {
        use futures::StreamExt;
        let url = format!("{}{path}", self.base);
        let resp = self
            .http()?
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.bytes().await.unwrap_or_default();
            bail!("{}", self.error_message(status, &bytes));
        }
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            sink.write_all(&chunk).context("cannot write output")?;
        }
        sink.flush().ok();
        Ok(())
    }

    pub async fn websocket(&self, path: &str) -> Result<Ws> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut req = url
            .as_str()
            .into_client_request()
            .context("bad WebSocket URL")?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.key)
                .parse()
                .context("API key has characters not allowed in a header")?,
        );
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let mut cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        cfg.max_message_size = Some(64 << 20);
        cfg.max_frame_size = Some(64 << 20);
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(cfg), true, connector);
        let Ok(connected) = tokio::time::timeout(self.timeout, connect).await else {
            return Err(anyhow::Error::new(Lost(format!(
                "no answer from herd server {} within {} — is it overloaded or stopped? (HERD_TIMEOUT sets how long to wait)",
                self.base,
                herd_core::format_duration(self.timeout)
            ))));
        };
        let (ws, _) = connected.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                let body = resp.body().as_deref().unwrap_or_default();
                anyhow!(self.error_message(resp.status(), body))
            }
            e => {
                if let Some(m) = herd_tls::pin_mismatch(&e) {
                    return anyhow!("cannot trust herd server {}: {m}", self.base);
                }
                let msg = e.to_string();
                if self.base.starts_with("http://") && speaks_tls(&msg) {
                    return anyhow::Error::new(Lost(format!(
                        "herd server {} did not answer plain HTTP: {msg} — it serves TLS: use https://{} (and set HERD_CA_SHA256)",
                        self.base,
                        self.base.trim_start_matches("http://")
                    )));
                }
                anyhow::Error::new(Lost(format!(
                    "cannot reach herd server {}: {msg} — is `herd server` (or `herd up`) running? check HERD_SERVER",
                    self.base
                )))
            }
        })?;
        Ok(ws)
    }

    /// The one line a failed call reports: the server's error body; an answer that is not
    /// one comes from something other than a herd server.
    fn error_message(&self, status: reqwest::StatusCode, body: &[u8]) -> String {
        // The server's line may quote what an agent or a person sent: shown escaped.
        serde_json::from_slice::<ErrorBody>(body)
            .map(|b| herd_core::escape_controls(&b.error).into_owned())
            .unwrap_or_else(|_| {
                format!(
                    "{} is not a herd server (no herd API at /api/v1: it answered {status}) — check HERD_SERVER",
                    self.base
                )
            })
    }
}

/// Whether a failed plain-HTTP call's error reads like a TLS server's answer (an alert
/// record where an HTTP status line should be, or a connection dropped at once).
fn speaks_tls(msg: &str) -> bool {
    let msg = msg.to_lowercase();
    [
        "invalid http version",
        "invalid http status",
        "connection closed before message completed",
        "error parsing http",
        "invalid http",
        "connection reset",
        "handshake not finished",
    ]
    .iter()
    .any(|n| msg.contains(n))
}
