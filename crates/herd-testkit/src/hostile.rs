//! Hostile clients, written once for the attack tests (`tests/it/preauth.rs`) and
//! `herd-bench preauth`: stalled gRPC `Join` calls over a raw HTTP/2 connection, and idle or
//! half-open sockets from many loopback source addresses. Unlike the rest of the kit these
//! are async: they run on the caller's tokio runtime.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt as _;
use http_body_util::StreamBody;
use hyper::body::Frame;

/// The path of the agent hub's `Join` call.
pub const JOIN: &str = "/herd.agent.v1.AgentHub/Join";

/// What a stalled call's body is made of: frames sent through a channel kept open.
pub type JoinBody =
    StreamBody<futures::channel::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>>;

/// The request side of an HTTP/2 connection.
pub type H2 = hyper::client::conn::http2::SendRequest<JoinBody>;

/// Source addresses the idle sockets come from: 127.0.0.2 to 127.0.0.41.
pub const SOURCES: usize = 40;

/// Opens an HTTP/2 connection (plain TCP, prior knowledge) to `addr`; its driver runs until
/// the returned handle is aborted or the connection ends.
pub async fn h2_connect(addr: SocketAddr) -> std::io::Result<(H2, tokio::task::JoinHandle<()>)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, driver))
}

/// One `Join` call on `h2` whose message declares `declared` bytes, of which it sends `sent`
/// and then stalls, its body left open. `on_sent` is called once the bytes are taken (a call
/// the server refuses early may never get there). Resolves when the server ends the call: the
/// `grpc-status` it ended with, `None` if the stream was reset or the connection lost.
pub async fn stalled_join(
    mut h2: H2,
    addr: SocketAddr,
    declared: u32,
    sent: usize,
    on_sent: impl FnOnce(),
) -> Option<u32> {
    let (mut tx, rx) = futures::channel::mpsc::channel(1);
    let req = hyper::Request::post(format!("http://{addr}{JOIN}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(rx))
        .ok()?;
    // The gRPC frame header (not compressed, then the declared length), then the bytes.
    let mut head = vec![0u8];
    head.extend_from_slice(&declared.to_be_bytes());
    let mut chunks = vec![Bytes::from(head)];
    let mut left = sent;
    while left > 0 {
        let n = left.min(64 * 1024);
        chunks.push(Bytes::from(vec![7u8; n]));
        left -= n;
    }
    let feed = async move {
        for c in chunks {
            // A refused stream stops taking data; it is left waiting, as a stalled attacker
            // would be.
            if tx.send(Ok(Frame::data(c))).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        on_sent();
        // The body stays open: the call stalls.
        let _open = tx;
        std::future::pending::<()>().await;
    };
    let answer = async move {
        let res = h2.send_request(req).await.ok()?;
        let mut status = grpc_status(res.headers());
        let mut body = res.into_body();
        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
            if let Some(t) = frame.trailers_ref() {
                status = grpc_status(t);
            }
        }
        status
    };
    tokio::select! {
        s = answer => s,
        () = feed => None,
    }
}

fn grpc_status(h: &hyper::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Opens idle socket number `i` to `addr` from source address `127.0.0.(2 + i % 40)`;
/// every tenth sends half a request head and stops. `None` if it could not connect within
/// 2 s (a server that stopped accepting: its backlog is full).
pub async fn idle_socket(addr: SocketAddr, i: usize) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt as _;
    let source = IpAddr::from([127, 0, 0, 2 + (i % SOURCES) as u8]);
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(source, 0)).ok()?;
    let mut c = tokio::time::timeout(Duration::from_secs(2), sock.connect(addr))
        .await
        .ok()?
        .ok()?;
    if i.is_multiple_of(10) {
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: her").await;
    }
    Some(c)
}

/// Lifts this process's open-files soft limit to its hard limit (an attack holds thousands
/// of sockets); returns the limit.
pub fn raise_open_files() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    Ok(hard)
}
