//! Connections for the tests (a raw client socket or a standard client after a real opening
//! handshake) and the frames a raw client writes and reads.

use std::io;
use std::time::Duration;

use herd_ws::{Incoming, ProtocolError, WsConn};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;

pub type Server = WsConn<OwnedWriteHalf>;

pub const FIN: u8 = 0x80;
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    (c.unwrap(), s.unwrap().0)
}

/// A server connection and the client's raw socket, as if past the handshake.
pub async fn raw_pair() -> (Server, TcpStream) {
    let (c, s) = tcp_pair().await;
    let (r, w) = s.into_split();
    (WsConn::new(r, w), c)
}

/// A server connection and a standard client after a real opening handshake: the server
/// side reads the request head, checks it with `accept_key` and answers 101 itself.
pub async fn client_pair() -> (Server, WebSocketStream<TcpStream>) {
    let (c, mut s) = tcp_pair().await;
    let server = async move {
        let head = read_request_head(&mut s).await;
        let accept = herd_ws::accept_key(&head).unwrap();
        let res = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(res.as_bytes()).await.unwrap();
        let (r, w) = s.into_split();
        WsConn::new(r, w)
    };
    let client = async {
        let (ws, res) = tokio_tungstenite::client_async("ws://127.0.0.1/live", c)
            .await
            .unwrap();
        assert_eq!(res.status(), 101);
        ws
    };
    tokio::join!(server, client)
}

async fn read_request_head(s: &mut TcpStream) -> HeaderMap {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        buf.push(s.read_u8().await.unwrap());
    }
    let text = String::from_utf8(buf).unwrap();
    let mut h = HeaderMap::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        h.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    h
}

/// The header of a masked client frame claiming `len` payload bytes (shortest encoding).
pub fn head(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// A whole masked client frame; `b0` is FIN, the reserved bits and the opcode.
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = head(b0, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A frame as the server wrote it.
#[derive(Debug)]
pub struct ServerFrame {
    /// FIN, reserved bits and opcode.
    pub b0: u8,
    /// Every header byte (the first two and the extended length).
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Reads one frame the server wrote; server frames are never masked.
pub async fn read_server_frame(c: &mut TcpStream) -> ServerFrame {
    let mut header = vec![0u8; 2];
    c.read_exact(&mut header).await.unwrap();
    assert_eq!(header[1] & 0x80, 0, "server frames are not masked");
    let len = match header[1] & 0x7F {
        126 => {
            let n = c.read_u16().await.unwrap();
            header.extend_from_slice(&n.to_be_bytes());
            u64::from(n)
        }
        127 => {
            let n = c.read_u64().await.unwrap();
            header.extend_from_slice(&n.to_be_bytes());
            n
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    c.read_exact(&mut payload).await.unwrap();
    ServerFrame {
        b0: header[0],
        header,
        payload,
    }
}

/// The next message the server received, which must be a whole one.
pub async fn received(server: &mut Server) -> Incoming {
    match server.recv().await {
        Some(Ok(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The protocol error the server reported, after which it receives nothing more. A server
/// that waits for more bytes instead of refusing would wait forever: the guard turns that
/// into a failure.
pub async fn refused(server: &mut Server) -> ProtocolError {
    let got = tokio::time::timeout(Duration::from_secs(60), server.recv())
        .await
        .expect("the server neither refused nor accepted the input");
    let err = match got {
        Some(Err(e)) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let p = ProtocolError::of(&err).unwrap();
    assert!(
        server.recv().await.is_none(),
        "nothing after a protocol error"
    );
    p
}

/// The server's close: one close frame with `code` (or no payload), then the end of the
/// stream.
pub async fn expect_close(c: &mut TcpStream, code: Option<u16>) {
    let f = read_server_frame(c).await;
    assert_eq!(f.b0, FIN | CLOSE);
    let want = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
    assert_eq!(f.payload, want);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
}
