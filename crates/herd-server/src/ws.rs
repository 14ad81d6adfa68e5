//! The server side of WebSocket (RFC 6455) for live output, written for bulk output.
//!
//! Output frames go to the socket with one vectored write of the frame header and the
//! output buffers themselves, which are shared with the agent's batch: no copy in user space
//! on the way to the watcher. Frames from the client (stdin, control messages, pings,
//! close) are read by a task of their own and queued, so waiting for one is cancel-safe.
//!
//! Only HTTP/1.1 upgrades are accepted (what `herd` and browsers use); no extensions.

use std::io::{self, IoSlice};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Largest message a client may send (stdin chunks, control messages).
pub const MAX_INCOMING: usize = 16 << 20;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Close,
}

type Io = TokioIo<hyper::upgrade::Upgraded>;
/// An upgraded HTTP connection.
pub type Sock = WsConn<tokio::io::WriteHalf<Io>>;

/// Answers a WebSocket upgrade request; once the connection is upgraded, `serve` runs with it.
/// A request that is not a valid upgrade gets a 400 with a one-line error.
pub fn upgrade<F, Fut>(mut req: Request, serve: F) -> Response
where
    F: FnOnce(WsConn<tokio::io::WriteHalf<Io>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let accept = match accept_key(req.headers()) {
        Ok(a) => a,
        Err(msg) => {
            let body = serde_json::json!({ "error": msg }).to_string();
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                serve(WsConn::new(r, w)).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// Checks the upgrade request and computes `Sec-WebSocket-Accept`.
fn accept_key(h: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err("this endpoint speaks WebSocket: connect with a WebSocket client");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err("WebSocket version 13 is required");
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key header is missing")?;
    Ok(accept_for(key.as_bytes()))
}

fn accept_for(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// One upgraded connection: the write side, and the client's messages as they arrive.
pub struct WsConn<W> {
    w: W,
    incoming: mpsc::Receiver<io::Result<Incoming>>,
    reader: tokio::task::JoinHandle<()>,
    closed: bool,
}

impl<W> Drop for WsConn<W> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl<W: AsyncWrite + Unpin> WsConn<W> {
    pub fn new<R: AsyncRead + Unpin + Send + 'static>(r: R, w: W) -> WsConn<W> {
        let (tx, rx) = mpsc::channel(16);
        let reader = tokio::spawn(read_messages(BufReader::with_capacity(64 * 1024, r), tx));
        WsConn {
            w,
            incoming: rx,
            reader,
            closed: false,
        }
    }

    /// The next message from the client; `None` once the connection is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<io::Result<Incoming>> {
        self.incoming.recv().await
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, &[text.as_bytes()]).await
    }

    /// One binary message made of `parts`, written without copying them.
    pub async fn send_binary(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.send(OP_BINARY, parts).await
    }

    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        let n = payload.len().min(125);
        self.send(OP_PONG, &[&payload[..n]]).await
    }

    /// Sends a close frame (once) and flushes.
    pub async fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.send(OP_CLOSE, &[]).await?;
        self.w.shutdown().await
    }

    async fn send(&mut self, opcode: u8, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut hdr = [0u8; 10];
        let hdr = frame_header(opcode, len, &mut hdr);
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
        slices.push(IoSlice::new(hdr));
        slices.extend(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p)),
        );
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = self.w.write_vectored(slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        self.w.flush().await
    }
}

/// A final, unmasked frame header for `len` payload bytes (server frames are never masked).
fn frame_header(opcode: u8, len: usize, buf: &mut [u8; 10]) -> &[u8] {
    buf[0] = 0x80 | opcode;
    if len < 126 {
        buf[1] = len as u8;
        &buf[..2]
    } else if let Ok(short) = u16::try_from(len) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&short.to_be_bytes());
        &buf[..4]
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &buf[..10]
    }
}

/// Reads the client's frames, joins fragmented messages and queues whole messages. Ends at
/// a close frame, end of stream or a protocol error (queued as an error).
async fn read_messages<R: AsyncRead + Unpin>(
    mut r: BufReader<R>,
    tx: mpsc::Sender<io::Result<Incoming>>,
) {
    // A fragmented text or binary message being assembled: (opcode, payload so far).
    let mut partial: Option<(u8, BytesMut)> = None;
    loop {
        let frame = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let msg = match (frame.opcode, partial.take()) {
            (OP_CLOSE, _) => Some(Incoming::Close),
            (OP_PING, p) => {
                partial = p;
                Some(Incoming::Ping(frame.payload.freeze()))
            }
            (OP_PONG, p) => {
                partial = p;
                None
            }
            (OP_TEXT | OP_BINARY, None) if frame.fin => whole(frame.opcode, frame.payload),
            (OP_TEXT | OP_BINARY, None) => {
                partial = Some((frame.opcode, frame.payload));
                None
            }
            (OP_CONTINUATION, Some((op, mut buf))) => {
                if buf.len() + frame.payload.len() > MAX_INCOMING {
                    Some(protocol_error("message too large"))
                } else {
                    buf.extend_from_slice(&frame.payload);
                    if frame.fin {
                        whole(op, buf)
                    } else {
                        partial = Some((op, buf));
                        None
                    }
                }
            }
            _ => Some(protocol_error("unexpected WebSocket frame")),
        };
        let Some(msg) = msg else { continue };
        let last = matches!(msg, Incoming::Close);
        if tx.send(Ok(msg)).await.is_err() || last {
            return;
        }
    }
}

fn whole(opcode: u8, payload: BytesMut) -> Option<Incoming> {
    Some(if opcode == OP_TEXT {
        match String::from_utf8(payload.to_vec()) {
            Ok(s) => Incoming::Text(s),
            Err(_) => protocol_error("text message is not UTF-8"),
        }
    } else {
        Incoming::Binary(payload.freeze())
    })
}

/// A protocol error ends the connection like a close from the client.
fn protocol_error(what: &str) -> Incoming {
    tracing::debug!(error = what, "WebSocket protocol error");
    Incoming::Close
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        return Err(bad("WebSocket extensions are not supported"));
    }
    let opcode = head[0] & 0x0F;
    if head[1] & 0x80 == 0 {
        return Err(bad("client frames must be masked"));
    }
    let len = match head[1] & 0x7F {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    let is_control = opcode & 0x8 != 0;
    if is_control && (len > 125 || !fin) {
        return Err(bad("malformed control frame"));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_INCOMING)
        .ok_or_else(|| bad("message too large"))?;
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask).await?;
    let mut payload = BytesMut::zeroed(len);
    r.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn talks_to_a_standard_client() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server_io);
        let mut server = WsConn::new(r, w);
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;

        // Server to client: text, and binary messages of every length encoding, from parts.
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let client_side = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(client.next().await.unwrap().unwrap());
            }
            // Client to server.
            client
                .send(Message::Text("{\"type\":\"eof\"}".into()))
                .await
                .unwrap();
            client
                .send(Message::Binary(vec![7u8; 70_000].into()))
                .await
                .unwrap();
            client
                .send(Message::Ping(b"hi".to_vec().into()))
                .await
                .unwrap();
            // A binary message in two fragments.
            for (data, kind, fin) in [
                (b"frag", Data::Binary, false),
                (b"ment", Data::Continue, true),
            ] {
                let frame = Frame::message(data.to_vec(), OpCode::Data(kind), fin);
                client.send(Message::Frame(frame)).await.unwrap();
            }
            // The pong answering our ping, then the server's close.
            let pong = client.next().await.unwrap().unwrap();
            let close = client.next().await;
            (got, pong, close.map(|m| m.is_ok_and(|m| m.is_close())))
        });
        server.send_text("hello").await.unwrap();
        server.send_binary(&[b"ab", b"", b"c"]).await.unwrap();
        server.send_binary(&[&[1u8; 125]]).await.unwrap();
        server
            .send_binary(&[&big[..1000], &big[1000..]])
            .await
            .unwrap();
        server.send_binary(&[&[9u8; 65_535]]).await.unwrap();
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Incoming::Text("{\"type\":\"eof\"}".into())
        );
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Incoming::Binary(vec![7u8; 70_000].into())
        );
        let Incoming::Ping(p) = server.recv().await.unwrap().unwrap() else {
            panic!("expected a ping")
        };
        server.send_pong(&p).await.unwrap();
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Incoming::Binary(b"fragment".to_vec().into())
        );
        server.close().await.unwrap();
        let (got, pong, closed) = client_side.await.unwrap();
        assert_eq!(got[0], Message::Text("hello".into()));
        assert_eq!(got[1], Message::Binary(b"abc".to_vec().into()));
        assert_eq!(got[2], Message::Binary(vec![1u8; 125].into()));
        assert_eq!(got[3], Message::Binary(big.into()));
        assert_eq!(got[4], Message::Binary(vec![9u8; 65_535].into()));
        assert_eq!(pong, Message::Pong(b"hi".to_vec().into()));
        assert_eq!(closed, Some(true));
    }

    #[tokio::test]
    async fn unmasked_client_frames_are_refused() {
        let (mut client_io, server_io) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(server_io);
        let mut server = WsConn::new(r, w);
        client_io.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
        assert!(matches!(server.recv().await, Some(Err(_))));
    }
}
