//! The one port: HTTP/1.1 and HTTP/2 (REST, WebSocket, gRPC) over plain TCP on loopback or
//! TLS beyond it. Connections are admitted and closed by [`conns`]: limits per source and in
//! total, few requests in flight before a connection authenticates, idle timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

mod conns;

use conns::{Close, Refused};
pub use conns::{Conn, Limits, Table};

/// How long an accepted connection has to finish its TLS handshake. Without a limit, a client
/// that connects and sends nothing holds a task and a descriptor for as long as it likes; a
/// handshake is a few round trips, so 10 s leaves room for the slowest link an agent dials
/// over while letting idle connections go.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The address a request's connection came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The connection a request came on (a request extension): a handler that accepts the
/// request's credential marks it authenticated ([`conns::Conn::authenticated`]).
#[derive(Clone)]
pub struct ConnRef(pub Arc<Conn>);

/// Marks the connection of a request (its [`ConnRef`] extension) authenticated.
pub fn authenticated(conn: Option<&ConnRef>) {
    if let Some(c) = conn {
        c.0.authenticated();
    }
}

/// How long a connection closed for being idle has to finish (a client that does not read
/// its GOAWAY holds its descriptor no longer).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<rustls::ServerConfig>>) {
    serve_with(
        listener,
        app,
        tls,
        TLS_HANDSHAKE_TIMEOUT,
        Table::new(Limits::from_rlimit()),
    )
    .await
}

/// [`serve`] with the TLS handshake limited to `handshake_timeout` and connections admitted
/// by `table`.
async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    table: Arc<Table>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = table.limits();
    tracing::debug!(
        max_connections = limits.max_total,
        max_unauthenticated_per_source = limits.max_unauth_per_source,
        "connection limits"
    );
    // A refused connection is one line, at most 10 a minute (then a count).
    let refusals = crate::log_limit::LogLimit::default();
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
        let conn = match table.admit(peer.ip()) {
            Ok(c) => c,
            Err(why) => {
                if refusals.admit("refused connections") {
                    let what = match why {
                        Refused::Full => "every connection the server can hold is busy",
                        Refused::Source => {
                            "the address holds its share of unauthenticated connections"
                        }
                    };
                    tracing::warn!(%peer, "connection refused: {what}");
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(Gate {
            app: app.clone(),
            peer,
            conn: conn.clone(),
        });
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = builder();
            let res = match acceptor {
                Some(acc) => {
                    let tls = tokio::select! {
                        t = tokio::time::timeout(handshake_timeout, acc.accept(tcp)) => t,
                        _ = conn.watchdog() => return,
                    };
                    match tls {
                        Ok(Ok(tls)) => {
                            let c = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                            watched(c, &conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let c = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    watched(c, &conn).await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves connection `c` until it ends, or until its watchdog closes it. An evicted
/// connection is idle (nothing in flight) and another is waiting for its slot: it is dropped
/// at once. One idle for too long is asked to finish (HTTP/2 GOAWAY, HTTP/1 close) and given
/// [`CLOSE_GRACE`].
async fn watched<F, E>(c: F, conn: &Conn) -> Result<(), E>
where
    F: Future<Output = Result<(), E>> + GracefulConnection,
{
    let mut c = std::pin::pin!(c);
    tokio::select! {
        r = c.as_mut() => return r,
        why = conn.watchdog() => {
            if let Close::Evicted = why {
                return Ok(());
            }
        }
    }
    c.as_mut().graceful_shutdown();
    match tokio::time::timeout(CLOSE_GRACE, c).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// A connection future that can be asked to finish.
trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection
    for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

/// The per-connection front of the router: tags each request with its connection and peer,
/// holds the connection busy while the request's response is being sent, and answers
/// "too many" to an unauthenticated connection over its share of requests in flight.
#[derive(Clone)]
struct Gate {
    app: Router,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Gate {
    type Response = http::Response<axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let Some(in_flight) = self.conn.begin() else {
            let res = too_many(&req);
            return Box::pin(async move { Ok(res) });
        };
        req.extensions_mut().insert(PeerAddr(self.peer));
        req.extensions_mut().insert(ConnRef(self.conn.clone()));
        let call = tower::ServiceExt::oneshot(self.app.clone(), req);
        Box::pin(async move {
            let res = call.await?;
            // The connection stays busy until the whole response is sent (a `Session`
            // stream for as long as the agent is connected).
            Ok(res.map(|body| {
                axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                    let _ = &in_flight;
                    f
                }))
            }))
        })
    }
}

/// The answer to a request over an unauthenticated connection's share: gRPC's
/// `RESOURCE_EXHAUSTED` to gRPC, 429 to anything else.
fn too_many<B>(req: &http::Request<B>) -> http::Response<axum::body::Body> {
    const WHY: &str = "too many requests in flight on a connection that has not authenticated — authenticate first, or open fewer streams at once";
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::resource_exhausted(WHY).into_http::<axum::body::Body>();
    }
    let mut res = http::Response::new(axum::body::Body::from(
        serde_json::json!({ "error": WHY }).to_string(),
    ));
    *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // Large windows so one agent can stream output at hundreds of MB/s over one HTTP/2 stream.
    // A request's head has 10 s to arrive (a client that trickles it in holds no more).
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024)
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
            Table::new(Limits::for_open_files(1024)),
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
