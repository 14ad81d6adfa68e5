//! One upgraded connection: sending frames from the caller's buffers, and the task that reads
//! the client's frames, joins fragments and queues whole messages.

use std::io::{self, IoSlice};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::frame::{
    self, Head, MAX_CONTROL, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use crate::{MAX_INCOMING, ProtocolError};

/// Messages from the client queued ahead of the reader of [`WsConn::recv`]; beyond that the
/// reading task waits, and TCP pushes back on the client.
const QUEUE: usize = 16;

/// A message from the client. Pongs are dropped; pings are the caller's to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    /// The client's close frame; nothing more is read after it.
    Close,
}

/// What the reading task hands over.
enum Received {
    Message(Incoming),
    /// A close frame, with its status code when it carried one.
    Closed(Option<u16>),
    Failed(io::Error),
}

/// One upgraded connection: the write side, and the client's messages as they arrive.
pub struct WsConn<W> {
    w: W,
    incoming: mpsc::Receiver<Received>,
    reader: tokio::task::JoinHandle<()>,
    /// The status code our close frame will carry: the client's own, echoed, or the one
    /// matching the protocol error it made.
    close_code: Option<u16>,
    closed: bool,
}

impl<W> Drop for WsConn<W> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl<W: AsyncWrite + Unpin> WsConn<W> {
    /// Starts reading the client's frames from `r` on a task of its own; frames are sent to
    /// `w`. Both are the halves of one upgraded connection, past the handshake.
    pub fn new<R: AsyncRead + Unpin + Send + 'static>(r: R, w: W) -> WsConn<W> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let reader = tokio::spawn(read_messages(BufReader::with_capacity(64 * 1024, r), tx));
        WsConn {
            w,
            incoming: rx,
            reader,
            close_code: None,
            closed: false,
        }
    }

    /// The next message from the client; `None` once the connection is gone. After
    /// `Incoming::Close` or an error nothing more comes. Cancel-safe.
    pub async fn recv(&mut self) -> Option<io::Result<Incoming>> {
        match self.incoming.recv().await? {
            Received::Message(m) => Some(Ok(m)),
            Received::Closed(code) => {
                self.close_code = code;
                Some(Ok(Incoming::Close))
            }
            Received::Failed(e) => {
                self.close_code = ProtocolError::of(&e).map(ProtocolError::close_code);
                Some(Err(e))
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, &[text.as_bytes()]).await
    }

    /// One binary message made of `parts`, written without copying them.
    pub async fn send_binary(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.send(OP_BINARY, parts).await
    }

    /// Answers a ping with its payload (cut to the 125 bytes a control frame may carry).
    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        let n = payload.len().min(MAX_CONTROL);
        self.send(OP_PONG, &[&payload[..n]]).await
    }

    /// Sends a close frame (once; later calls do nothing) and shuts the write side down. The
    /// frame echoes the status code of the client's close frame, or gives the code of the
    /// protocol error `recv` reported.
    pub async fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let code = self.close_code.map(u16::to_be_bytes);
        let payload: &[u8] = code.as_ref().map_or(&[], |c| &c[..]);
        self.write_frame(OP_CLOSE, &[payload]).await?;
        self.w.shutdown().await
    }

    /// A data or pong frame; none may follow our close frame.
    async fn send(&mut self, opcode: u8, parts: &[&[u8]]) -> io::Result<()> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "WebSocket already closed",
            ));
        }
        self.write_frame(opcode, parts).await
    }

    /// One frame: its header and `parts` in vectored writes, then a flush. Not cancel-safe
    /// (a frame cut short leaves the stream unusable).
    async fn write_frame(&mut self, opcode: u8, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut hdr = [0u8; 10];
        let hdr = frame::header(opcode, len, &mut hdr);
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

/// Reads the client's frames and queues whole messages until a close frame, the end of the
/// stream, an error or the receiver going away.
async fn read_messages<R: AsyncRead + Unpin>(mut r: BufReader<R>, tx: mpsc::Sender<Received>) {
    let last = match read_until_end(&mut r, &tx).await {
        Ok(Some(code)) => Received::Closed(code),
        Ok(None) => return,
        Err(e) => Received::Failed(e),
    };
    let _ = tx.send(last).await;
}

/// The loop of [`read_messages`]: `Ok(Some(code))` at a close frame, `Ok(None)` at the end of
/// the stream (or when nobody listens any more).
async fn read_until_end<R: AsyncRead + Unpin>(
    r: &mut R,
    tx: &mpsc::Sender<Received>,
) -> io::Result<Option<Option<u16>>> {
    // The text or binary message being assembled: its opcode and its payload so far. Data
    // frames are read straight into it, so the limit bounds everything buffered.
    let mut op: Option<u8> = None;
    let mut msg = BytesMut::new();
    loop {
        let Some(head) = frame::read_head(r).await? else {
            return Ok(None);
        };
        let queued = if head.is_control() {
            let mut buf = [0u8; MAX_CONTROL];
            let payload = &mut buf[..head.len as usize];
            r.read_exact(payload).await?;
            frame::unmask(payload, head.mask);
            match head.opcode {
                OP_PING => Incoming::Ping(Bytes::copy_from_slice(payload)),
                OP_PONG => continue,
                _ => return close_code(payload).map(Some),
            }
        } else {
            let started = match (head.opcode, op) {
                (OP_CONTINUATION, Some(op)) => op,
                (OP_CONTINUATION, None) => return Err(ProtocolError::UnexpectedContinuation.into()),
                (_, Some(_)) => return Err(ProtocolError::UnfinishedMessage.into()),
                (opcode, None) => opcode,
            };
            let len = fits(&head, msg.len())?;
            frame::read_payload(r, len, head.mask, &mut msg).await?;
            if !head.fin {
                op = Some(started);
                continue;
            }
            op = None;
            whole(started, std::mem::take(&mut msg))?
        };
        if tx.send(Received::Message(queued)).await.is_err() {
            return Ok(None);
        }
    }
}

/// The payload length of a data frame, if the message stays within [`MAX_INCOMING`] with it.
fn fits(head: &Head, so_far: usize) -> Result<usize, ProtocolError> {
    usize::try_from(head.len)
        .ok()
        .filter(|len| len.saturating_add(so_far) <= MAX_INCOMING)
        .ok_or(ProtocolError::TooLarge)
}

fn whole(opcode: u8, payload: BytesMut) -> Result<Incoming, ProtocolError> {
    if opcode == OP_TEXT {
        String::from_utf8(Vec::from(payload))
            .map(Incoming::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Incoming::Binary(payload.freeze()))
    }
}

/// The status code of a close frame's payload (none, or two bytes of a code a peer may send
/// and an optional UTF-8 reason).
fn close_code(payload: &[u8]) -> io::Result<Option<u16>> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload.len() {
            0 => Ok(None),
            _ => Err(ProtocolError::BadClose.into()),
        };
    };
    let code = u16::from_be_bytes(*code);
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable || std::str::from_utf8(reason).is_err() {
        return Err(ProtocolError::BadClose.into());
    }
    Ok(Some(code))
}
