//! The one port: HTTP/1.1 and HTTP/2 (REST, WebSocket, gRPC) over plain TCP on loopback or
//! TLS beyond it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long an accepted connection has to finish its TLS handshake. Without a limit, a client
/// that connects and sends nothing holds a task and a descriptor for as long as it likes; a
/// handshake is a few round trips, so 10 s leaves room for the slowest link an agent dials
/// over while letting idle connections go.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The address a request's connection came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<rustls::ServerConfig>>) {
    serve_with(listener, app, tls, TLS_HANDSHAKE_TIMEOUT).await
}

/// [`serve`] with the TLS handshake limited to `handshake_timeout`.
async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        );
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = TowerToHyperService::new(app);
            let builder = builder();
            let res = match acceptor {
                Some(acc) => match tokio::time::timeout(handshake_timeout, acc.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // Large windows so one agent can stream output at hundreds of MB/s over one HTTP/2 stream.
    b.http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_frame_size(1024 * 1024 - 1)
        // Agents ping every 10 s and heartbeat; the server's own pings (per connection, so
        // per agent) only find peers that vanished without either.
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server with TLS from herd-tls's generated CA; returns its address and CA pin.
    async fn tls_server(
        dir: &std::path::Path,
        handshake_timeout: Duration,
    ) -> (std::net::SocketAddr, String) {
        let tls = herd_tls::server_tls_generated(dir, &[]).unwrap();
        let pin = tls.ca_fingerprint.clone().unwrap();
        let app = Router::new().route("/", get(|| async { "served" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(
            listener,
            app,
            Some(tls.config),
            handshake_timeout,
        ));
        (addr, pin)
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _) = tls_server(dir.path(), Duration::from_millis(100)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The server hangs up without a word; without a limit this read would wait forever
        // (the outer timeout only turns such a hang into a failure).
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buf))
            .await
            .expect("the server still holds a client that sent nothing");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn a_client_that_handshakes_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, pin) = tls_server(dir.path(), TLS_HANDSHAKE_TIMEOUT).await;
        let client =
            herd_tls::client_config(&herd_tls::Trust::Pinned(pin), &[herd_tls::ALPN_HTTP11])
                .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut res = Vec::new();
        // A close without TLS close_notify is fine here: the whole response is in.
        let _ = tls.read_to_end(&mut res).await;
        let res = String::from_utf8_lossy(&res);
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.ends_with("served"), "{res}");
    }
}
