//! The HTTP and WebSocket client of the herd API, used by every CLI command.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

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

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("server answered {status}"));
            if status == StatusCode::UNAUTHORIZED {
                bail!("{msg}");
            }
            bail!("{msg}");
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.request(Method::POST, path, Some(body)).await
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
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "{}",
                v.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or(&format!("server answered {status}"))
            );
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
                let body = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| format!("server answered {}", resp.status()));
                anyhow!(body)
            }
            e => anyhow!(
                "cannot reach herd server {}: {e} — is `herd server` (or `herd up`) running?",
                self.base
            ),
        })?;
        Ok(ws)
    }
}
