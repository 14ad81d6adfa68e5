//! The watcher's output arithmetic, apart from any socket: which part of a live chunk or of
//! a piece read back from the output log a watcher still needs, given how many bytes of the
//! task's output (stdout and stderr together, an omitted stretch counting as delivered) it
//! has had. Tested with plain values.

use bytes::Bytes;
use herd_outlog::Chunk;

/// What to send of a live chunk pushed at `offset` to a watcher that has had `sent` bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveSlice<'a> {
    /// The chunk starts beyond what the watcher has: the stretch between must be read from
    /// the output log first (the watcher lost its tap for a while).
    pub gap: bool,
    /// Output frames to send, each a run of pieces of one stream, in order.
    pub frames: Vec<(u8, Vec<&'a [u8]>)>,
    /// The watcher's count once they are sent.
    pub sent: u64,
}

/// The unsent part of a live chunk (`parts` in order, the first starting at `offset`).
pub fn live_slice(sent: u64, offset: u64, parts: &[(u8, Bytes)]) -> LiveSlice<'_> {
    let len: u64 = parts.iter().map(|(_, d)| d.len() as u64).sum();
    let end = offset + len;
    if end <= sent {
        return LiveSlice {
            gap: false,
            frames: Vec::new(),
            sent,
        };
    }
    let mut frames: Vec<(u8, Vec<&[u8]>)> = Vec::new();
    let mut at = offset;
    for (stream, data) in parts {
        let part_end = at + data.len() as u64;
        if part_end > sent {
            let skip = sent.saturating_sub(at) as usize;
            let piece = &data[skip.min(data.len())..];
            match frames.last_mut() {
                Some((s, pieces)) if s == stream => pieces.push(piece),
                _ => frames.push((*stream, vec![piece])),
            }
        }
        at = part_end;
    }
    LiveSlice {
        gap: offset > sent,
        frames,
        sent: end,
    }
}

/// Something to send from the output log.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Data {
        stream: u8,
        data: &'a [u8],
    },
    /// Bytes no longer stored (over the cap).
    Omitted {
        bytes: u64,
    },
}

/// What to send of a chunk read from the log that starts at output offset `start`, to a
/// watcher that has had `sent` bytes and may be sent up to `limit` (what arrives live from
/// there on is not read from the log); and the watcher's count afterwards. `None`: nothing of
/// this chunk (all of it was sent already, or it starts at or beyond the limit).
pub fn log_piece(sent: u64, start: u64, chunk: &Chunk, limit: u64) -> Option<(Piece<'_>, u64)> {
    let len = match chunk {
        Chunk::Data { data, .. } => data.len() as u64,
        Chunk::Omitted { bytes } => *bytes,
    };
    let end = start + len;
    if end <= sent || start >= limit || sent >= limit {
        return None;
    }
    let skip = sent.saturating_sub(start);
    match chunk {
        Chunk::Data { stream, data } => {
            let take = (end.min(limit) - start) as usize;
            let data = &data[(skip as usize).min(take)..take];
            Some((
                Piece::Data {
                    stream: *stream,
                    data,
                },
                start + take as u64,
            ))
        }
        // An omitted stretch is told whole: nothing of it can be sent anyway.
        Chunk::Omitted { bytes } => Some((
            Piece::Omitted {
                bytes: bytes - skip,
            },
            end,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &[(u8, &'static str)]) -> Vec<(u8, Bytes)> {
        p.iter().map(|(s, d)| (*s, Bytes::from(*d))).collect()
    }

    fn text(frames: &[(u8, Vec<&[u8]>)]) -> Vec<(u8, String)> {
        frames
            .iter()
            .map(|(s, pieces)| {
                (
                    *s,
                    pieces.iter().map(|p| String::from_utf8_lossy(p)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn live_chunks_are_cut_where_the_watcher_stands() {
        // (sent, offset, parts) → (gap, frames, sent after)
        type Case = (
            u64,
            u64,
            Vec<(u8, &'static str)>,
            bool,
            Vec<(u8, &'static str)>,
            u64,
        );
        let cases: Vec<Case> = vec![
            (0, 0, vec![(1, "abc")], false, vec![(1, "abc")], 3),
            // Already had all of it (read from the log before the tap delivered it).
            (5, 0, vec![(1, "abc")], false, vec![], 5),
            (3, 0, vec![(1, "abc")], false, vec![], 3),
            // Overlap: only the new part.
            (
                2,
                0,
                vec![(1, "abc"), (1, "de")],
                false,
                vec![(1, "cde")],
                5,
            ),
            // Cut inside the second part, streams kept apart, same streams joined.
            (
                4,
                0,
                vec![(1, "abc"), (2, "de"), (2, "f"), (1, "g")],
                false,
                vec![(2, "ef"), (1, "g")],
                7,
            ),
            // A gap: the log must fill 3..10 first; the chunk itself goes whole.
            (3, 10, vec![(1, "xy")], true, vec![(1, "xy")], 12),
            // Empty pieces make no frame of their own.
            (0, 0, vec![(1, ""), (1, "a")], false, vec![(1, "a")], 1),
        ];
        for (sent, offset, p, gap, frames, after) in cases {
            let p = parts(&p);
            let got = live_slice(sent, offset, &p);
            let want: Vec<(u8, String)> = frames.iter().map(|(s, d)| (*s, d.to_string())).collect();
            assert_eq!(
                (got.gap, text(&got.frames), got.sent),
                (gap, want, after),
                "sent {sent} offset {offset}"
            );
        }
    }

    #[test]
    fn log_pieces_skip_what_was_sent_and_stop_at_the_limit() {
        let data = |s: &'static str| Chunk::Data {
            stream: 1,
            data: Bytes::from(s),
        };
        // (sent, start, chunk, limit) → (piece, sent after)
        type Case = (u64, u64, Chunk, u64, Option<(Piece<'static>, u64)>);
        let cases: Vec<Case> = vec![
            (
                0,
                0,
                data("hello"),
                u64::MAX,
                Some((
                    Piece::Data {
                        stream: 1,
                        data: b"hello",
                    },
                    5,
                )),
            ),
            (
                2,
                0,
                data("hello"),
                u64::MAX,
                Some((
                    Piece::Data {
                        stream: 1,
                        data: b"llo",
                    },
                    5,
                )),
            ),
            (5, 0, data("hello"), u64::MAX, None),
            // Up to the limit only: the rest arrives live.
            (
                0,
                0,
                data("hello"),
                3,
                Some((
                    Piece::Data {
                        stream: 1,
                        data: b"hel",
                    },
                    3,
                )),
            ),
            (
                1,
                0,
                data("hello"),
                3,
                Some((
                    Piece::Data {
                        stream: 1,
                        data: b"el",
                    },
                    3,
                )),
            ),
            (5, 5, data("world"), 5, None),
            // Beyond the limit already (delivered live): nothing, and never backwards.
            (4, 0, data("hello"), 3, None),
            // A later chunk.
            (
                5,
                5,
                data("world"),
                8,
                Some((
                    Piece::Data {
                        stream: 1,
                        data: b"wor",
                    },
                    8,
                )),
            ),
            // Omitted stretches count as delivered, told once, the part not yet told.
            (
                0,
                0,
                Chunk::Omitted { bytes: 100 },
                u64::MAX,
                Some((Piece::Omitted { bytes: 100 }, 100)),
            ),
            (
                40,
                0,
                Chunk::Omitted { bytes: 100 },
                50,
                Some((Piece::Omitted { bytes: 60 }, 100)),
            ),
            (100, 0, Chunk::Omitted { bytes: 100 }, u64::MAX, None),
        ];
        for (sent, start, chunk, limit, want) in cases {
            let got = log_piece(sent, start, &chunk, limit);
            assert_eq!(got, want, "sent {sent} start {start} limit {limit}");
        }
    }
}
