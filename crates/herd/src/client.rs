//! The HTTP and WebSocket client of the herd API, used by every CLI command: typed calls
//! (`get`, `post`) whose bodies and answers are herd-api types, raw output downloads, and
//! the attach WebSocket. A failed call becomes the server's one-line error.

use anyhow::{Context, Result, anyhow, bail};
use herd_api::ErrorBody;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{self, ClientConfig};

pub struct Client {
    pub base: String,
    key: String,
    http: reqwest::Client,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Client {
    pub fn from_config(cfg: &ClientConfig) -> Result<Client> {
        let (base, key) = config::resolve(cfg)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .no_proxy();
        let mut tls = None;
        if base.starts_with("https://") {
            let pin = cfg.ca_sha256.clone().ok_or_else(|| {
                anyhow!("{base} uses TLS but no CA pin is configured — set HERD_CA_SHA256 (printed by the server at start)")
            })?;
            let c = herd_tls::client_config(
                &herd_tls::Trust::Pinned(pin),
                &[herd_tls::ALPN_H2, herd_tls::ALPN_HTTP11],
            )?;
            builder = builder.tls_backend_preconfigured((*c).clone());
            let ws = herd_tls::client_config(
                &herd_tls::Trust::Pinned(cfg.ca_sha256.clone().unwrap_or_default()),
                &[herd_tls::ALPN_HTTP11],
            )?;
            tls = Some(ws);
        } else if !base.starts_with("http://") {
            bail!("bad server URL {base:?}: expected http://HOST:PORT or https://HOST:PORT");
        }
        Ok(Client {
            base,
            key,
            http: builder.build().context("cannot build the HTTP client")?,
            tls,
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        anyhow!(
            "cannot reach herd server {}: {msg} — is `herd server` (or `herd up`) running? check HERD_SERVER",
            self.base
        )
    }

    /// One call: `body` as JSON (if any), the answer read as `T`. A failed call is the
    /// server's one-line error.
    async fn request<B, T>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            bail!("{}", error_message(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "unexpected answer from herd server {} to {path}: {e} — is the server the same version as this CLI?",
                self.base
            )
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
            .http
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
            bail!("{}", error_message(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "unexpected answer from herd server {} to {path}: {e} — is the server the same version as this CLI?",
                self.base
            )
        })
    }

    /// Raw bytes of a response (task output), streamed to `sink`.
    pub async fn download(&self, path: &str, sink: &mut (dyn std::io::Write + Send)) -> Result<()> {
        use futures::StreamExt;
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.bytes().await.unwrap_or_default();
            bail!("{}", error_message(status, &bytes));
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
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(cfg),
            true,
            connector,
        )
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                let body = resp.body().as_deref().unwrap_or_default();
                anyhow!(error_message(resp.status(), body))
            }
            e => anyhow!(
                "cannot reach herd server {}: {e} — is `herd server` (or `herd up`) running?",
                self.base
            ),
        })?;
        Ok(ws)
    }
}

/// The one line a failed call reports: the server's error body, or its status when the body
/// is not one.
fn error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| format!("server answered {status}"))
}
