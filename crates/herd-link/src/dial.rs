//! Dialling the server: plain HTTP/2 for http:// URLs, TLS pinned to the server's CA for
//! https:// URLs. Keepalive pings notice a dead link within seconds.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad server URL {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    Url(String),
    #[error("{0}")]
    Tls(#[from] herd_tls::TlsError),
    #[error("https server {0} needs the CA pin: pass --ca-sha256 (printed by `herd token create`)")]
    NoPin(String),
    #[error("cannot reach {url}: {msg}")]
    Transport { url: String, msg: String },
    /// The server presented a CA other than the pinned one: trying again will not help.
    #[error("cannot trust {url}: {mismatch}")]
    PinMismatch {
        url: String,
        mismatch: herd_tls::PinMismatch,
    },
    #[error("{}", .0.message())]
    Status(tonic::Status),
}

impl ConnectError {
    /// Whether trying again later may help (the server is down or restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Transport { .. } => true,
            ConnectError::Status(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
            ),
            _ => false,
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        cur = s.source();
    }
    msg
}

/// Dials `url` (`http://` or `https://` with the CA `pin`) and returns the HTTP/2 channel.
pub async fn channel(url: &str, pin: Option<&str>) -> Result<Channel, ConnectError> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|_| ConnectError::Url(url.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        // A dead link (the server vanished, a partition) is noticed within 15 s; pings are
        // cheap for one agent but a server answers them for the whole fleet.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024);
    let transport = |e: tonic::transport::Error| match herd_tls::pin_mismatch(&e) {
        Some(mismatch) => ConnectError::PinMismatch {
            url: url.to_string(),
            mismatch,
        },
        None => ConnectError::Transport {
            url: url.to_string(),
            msg: source_chain(&e),
        },
    };
    if url.starts_with("https://") {
        let pin = pin.ok_or_else(|| ConnectError::NoPin(url.to_string()))?;
        // No ALPN here: hyper-rustls's `enable_http2()` sets "h2" itself and panics
        // ("ALPN protocols should not be pre-defined") if the config already has some.
        let tls = herd_tls::client_config(&herd_tls::Trust::Pinned(pin.to_string()), &[])?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        ep.connect_with_connector(conn).await.map_err(transport)
    } else if url.starts_with("http://") {
        ep.connect().await.map_err(transport)
    } else {
        Err(ConnectError::Url(url.to_string()))
    }
}
