//! Frames between the fleet and its process runner: a 4-byte big-endian length, then one
//! protobuf message.

use std::io;

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts.
const MAX_FRAME: usize = 16 << 20;

pub(crate) async fn write_frame<W: AsyncWrite + Unpin, M: Message>(
    w: &mut W,
    m: &M,
) -> io::Result<()> {
    let len = m.encoded_len();
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&prefix.to_be_bytes());
    m.encode(&mut buf).map_err(io::Error::other)?;
    w.write_all(&buf).await
}

/// The next frame; `None` at a clean end of the stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, M: Message + Default>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<M>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    M::decode(&buf[..])
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events_frame;
    use herd_proto::v1::{self as pb, AgentFrame, TaskEvent, task_event};

    fn ev(task: &str, kind: task_event::Kind) -> TaskEvent {
        TaskEvent {
            task_id: task.into(),
            seq: 0,
            kind: Some(kind),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let frame = events_frame(vec![ev(
            "t1",
            task_event::Kind::Started(pb::Started { pid: 7 }),
        )]);
        write_frame(&mut a, &frame).await.unwrap();
        write_frame(&mut a, &frame).await.unwrap();
        drop(a);
        let mut buf = Vec::new();
        for _ in 0..2 {
            let got: Option<AgentFrame> = read_frame(&mut b, &mut buf).await.unwrap();
            assert_eq!(got.as_ref(), Some(&frame));
        }
        let end: Option<AgentFrame> = read_frame(&mut b, &mut buf).await.unwrap();
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let len = u32::try_from(MAX_FRAME + 1).unwrap();
        a.write_all(&len.to_be_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let err = read_frame::<_, AgentFrame>(&mut b, &mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
