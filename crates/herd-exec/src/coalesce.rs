//! Output pump: reads one output stream of the task and turns it into
//! coalesced `ExecEvent::Output` events.
//!
//! Owns the batching policy: an event carries at most [`CHUNK`] bytes, and
//! once data is pending we wait at most [`LINGER`] for more before emitting,
//! so a process printing a line per millisecond yields a handful of events,
//! not one per line. Sending is `send().await` on a bounded channel, so a slow
//! consumer pauses reading and, through the full pipe, the child itself.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::mask::Masker;
use crate::tap::Tap;
use crate::{ExecEvent, OutStream};

/// Largest payload of one Output event, and the read buffer size.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Below this much spare capacity (with nothing pending) a fresh buffer is taken.
const MIN_READ: usize = 4 * 1024;
/// How long pending data may wait for more before it is emitted.
pub(crate) const LINGER: Duration = Duration::from_millis(5);

/// How a pump ended.
#[derive(Debug)]
pub(crate) enum PumpEnd {
    /// The stream reached end of file; everything was delivered.
    Eof,
    /// Told to stop (the process exited but something kept the stream open).
    Stopped,
    /// The event receiver is gone.
    Abandoned,
    /// A read error other than EOF; what was read before it was delivered.
    Failed(io::Error),
}

/// Pumps `reader` into `events` until EOF, a read error, the receiver going
/// away, or `stop` turning true. Pending data is always flushed before
/// returning (except when the receiver is gone). With a `masker`, secrets become `***`
/// before anything is sent (a tail that may be the start of one waits for the next read).
pub(crate) async fn pump<R>(
    mut reader: R,
    stream: OutStream,
    events: mpsc::Sender<ExecEvent>,
    mut stop: watch::Receiver<bool>,
    mut masker: Option<Masker>,
    tap: Option<Arc<Tap>>,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
{
    let out = Out {
        stream,
        events: &events,
        tap: tap.as_deref(),
    };
    // Output is read straight into `pending`'s spare capacity and handed out with
    // `split().freeze()`: one copy (from the kernel), none in user space. Consecutive events
    // share one allocation until its capacity is used up, so a small event flushed by the
    // linger does not pin a whole fresh chunk on its own.
    let mut pending = BytesMut::with_capacity(CHUNK);
    // Set when `pending` goes from empty to non-empty: bounds the latency of
    // the first byte rather than sliding with every read, so a steady trickle
    // still gets emitted every LINGER.
    let mut flush_at: Option<Instant> = None;

    loop {
        if pending.is_empty() && pending.capacity() < MIN_READ {
            // What is left of the current allocation is too small to read into
            // usefully; the events already frozen keep the old one alive.
            pending.reserve(CHUNK);
        }
        let room = (CHUNK - pending.len()).min(pending.capacity() - pending.len());
        let mut dst = (&mut pending).limit(room);
        let step = tokio::select! {
            biased;
            // Stopping wins over reading: the caller decided the stream is done.
            () = stopped(&mut stop) => Step::Stop,
            _ = sleep_until_opt(flush_at) => Step::Flush,
            read = reader.read_buf(&mut dst) => Step::Read(read),
        };
        match step {
            Step::Stop => {
                return out
                    .finish(&mut pending, &mut masker, PumpEnd::Stopped)
                    .await;
            }
            Step::Flush => {
                if !out.emit(&mut pending, &mut masker).await {
                    return PumpEnd::Abandoned;
                }
                flush_at = None;
            }
            Step::Read(Ok(0)) => {
                return out.finish(&mut pending, &mut masker, PumpEnd::Eof).await;
            }
            Step::Read(Ok(_)) => {
                if pending.len() >= CHUNK || pending.len() == pending.capacity() {
                    if !out.emit(&mut pending, &mut masker).await {
                        return PumpEnd::Abandoned;
                    }
                    flush_at = None;
                } else if flush_at.is_none() {
                    flush_at = Some(Instant::now() + LINGER);
                }
            }
            Step::Read(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Step::Read(Err(e)) => {
                return out
                    .finish(&mut pending, &mut masker, PumpEnd::Failed(e))
                    .await;
            }
        }
    }
}

/// What woke the pump.
enum Step {
    Stop,
    Flush,
    Read(io::Result<usize>),
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrow guard must not live across an await of the caller, hence
    // this wrapper discarding it.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Where a pump's output goes.
struct Out<'a> {
    stream: OutStream,
    events: &'a mpsc::Sender<ExecEvent>,
    /// The task's supervision sees what is sent (masked).
    tap: Option<&'a Tap>,
}

impl Out<'_> {
    /// Flushes what is pending (and what the masker holds) and returns `end`, or
    /// `Abandoned` if nobody listens.
    async fn finish(
        &self,
        pending: &mut BytesMut,
        masker: &mut Option<Masker>,
        end: PumpEnd,
    ) -> PumpEnd {
        if !self.emit(pending, masker).await {
            return PumpEnd::Abandoned;
        }
        if let Some(m) = masker
            && !self.send(m.finish()).await
        {
            return PumpEnd::Abandoned;
        }
        end
    }

    /// Sends the pending bytes (masked) as one event (nothing if empty). False if the
    /// receiver is gone.
    async fn emit(&self, pending: &mut BytesMut, masker: &mut Option<Masker>) -> bool {
        if pending.is_empty() {
            return true;
        }
        // `pending` keeps the rest of the allocation; the pump reads on into it.
        let data = pending.split().freeze();
        match masker {
            Some(m) => self.send(m.push(data)).await,
            None => self.send(data).await,
        }
    }

    /// Sends `data` in events of at most [`CHUNK`] bytes (masked output with a held tail
    /// may pass it). False if the receiver is gone.
    async fn send(&self, mut data: bytes::Bytes) -> bool {
        if let Some(tap) = self.tap {
            tap.record(&data);
        }
        while !data.is_empty() {
            let part = data.split_to(data.len().min(CHUNK));
            let ev = ExecEvent::Output {
                stream: self.stream,
                data: part,
            };
            if self.events.send(ev).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Sleeps until `at`, or forever if there is no deadline.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn coalesces_and_preserves_bytes() {
        let (mut w, r) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let pump = tokio::spawn(pump(r, OutStream::Stdout, tx, stop_rx, None, None));
        use tokio::io::AsyncWriteExt;
        for i in 0..20 {
            w.write_all(format!("{i}\n").as_bytes()).await.unwrap();
        }
        drop(w);
        assert!(matches!(pump.await.unwrap(), PumpEnd::Eof));
        let mut all = Vec::new();
        let mut n = 0;
        while let Some(ExecEvent::Output { data, .. }) = rx.recv().await {
            all.extend_from_slice(&data);
            n += 1;
        }
        let expected: String = (0..20).map(|i| format!("{i}\n")).collect();
        assert_eq!(String::from_utf8(all).unwrap(), expected);
        assert!(n < 5, "{n} events for 20 quick writes");
    }

    #[tokio::test]
    async fn stop_flushes_pending() {
        let (mut w, r) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = watch::channel(false);
        let pump = tokio::spawn(pump(r, OutStream::Stderr, tx, stop_rx, None, None));
        use tokio::io::AsyncWriteExt;
        w.write_all(b"partial").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop_tx.send(true).unwrap();
        assert!(matches!(pump.await.unwrap(), PumpEnd::Stopped));
        match rx.recv().await {
            Some(ExecEvent::Output { stream, data }) => {
                assert_eq!(stream, OutStream::Stderr);
                assert_eq!(&data[..], b"partial");
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(w);
    }

    #[tokio::test]
    async fn a_secret_split_across_reads_is_masked() {
        let (mut w, r) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let masker = Masker::new(&[bytes::Bytes::from_static(b"s3cr3t-value")]);
        let pump = tokio::spawn(pump(r, OutStream::Stdout, tx, stop_rx, masker, None));
        use tokio::io::AsyncWriteExt;
        w.write_all(b"token: s3cr3t").await.unwrap();
        // The linger flushes what was read: the part before the secret goes out at once.
        match rx.recv().await {
            Some(ExecEvent::Output { data, .. }) => assert_eq!(&data[..], b"token: "),
            other => panic!("unexpected {other:?}"),
        }
        w.write_all(b"-value and s3cr").await.unwrap();
        drop(w);
        assert!(matches!(pump.await.unwrap(), PumpEnd::Eof));
        let mut all = Vec::new();
        while let Some(ExecEvent::Output { data, .. }) = rx.recv().await {
            all.extend_from_slice(&data);
        }
        assert_eq!(&all[..], b"*** and s3cr");
    }

    #[tokio::test]
    async fn bulk_output_is_chunked_and_intact() {
        let (mut w, r) = tokio::io::duplex(256 * 1024);
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let pump = tokio::spawn(pump(r, OutStream::Stdout, tx, stop_rx, None, None));
        let expected: Vec<u8> = (0..3 * CHUNK + 1234).map(|i| (i % 251) as u8).collect();
        let data = expected.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Uneven writes, with a pause so the linger flushes a partial chunk.
            w.write_all(&data[..10]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            for part in data[10..].chunks(7000) {
                w.write_all(part).await.unwrap();
            }
        });
        let mut all = Vec::new();
        while let Some(ev) = rx.recv().await {
            let ExecEvent::Output { data, .. } = ev else {
                panic!("unexpected {ev:?}")
            };
            assert!(!data.is_empty() && data.len() <= CHUNK, "{}", data.len());
            all.extend_from_slice(&data);
        }
        writer.await.unwrap();
        assert!(matches!(pump.await.unwrap(), PumpEnd::Eof));
        assert_eq!(all, expected);
    }
}
