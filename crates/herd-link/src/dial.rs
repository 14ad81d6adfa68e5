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
    /// The server answered, but not in HTTP/2: not a herd server (or one that serves TLS,
    /// dialled with http://). Trying again will not help.
    #[error(
        "{0} does not speak herd's agent protocol (HTTP/2): it is not a herd server, or it serves TLS — check --server (https:// and --ca-sha256 for a server that listens beyond loopback)"
    )]
    NotHerd(String),
}

/// Whether a call failed because the server's answer was not HTTP/2 at all (our side gave up
/// on the connection with a frame size or protocol error): a web server, a proxy, or TLS
/// bytes read as plain HTTP/2. A herd server, even one restarting, never causes this.
pub fn not_http2(status: &tonic::Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cur {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away()
                && h2.is_library()
                && matches!(
                    h2.reason(),
                    Some(h2::Reason::FRAME_SIZE_ERROR | h2::Reason::PROTOCOL_ERROR)
                );
        }
        cur = e.source();
    }
    false
}

impl ConnectError {
    /// A failed call to `url`: [`ConnectError::NotHerd`] when the answer was not HTTP/2.
    pub fn from_status(url: &str, status: tonic::Status) -> ConnectError {
        if not_http2(&status) {
            ConnectError::NotHerd(url.to_string())
        } else {
            ConnectError::Status(status)
        }
    }
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
