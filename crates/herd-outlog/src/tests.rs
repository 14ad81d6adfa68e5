//! Unit tests against a temp directory, through the public API (plus a peek at the files
//! where the on-disk bounds are the point).

use std::path::Path;

use super::*;
use crate::layout::SEG_HDR;

const KIB: u64 = 1024;

/// Deterministic pseudo-random bytes, so a mismatch is reproducible.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The expected log as parallel byte / stream-tag vectors.
#[derive(Default, Clone)]
struct Model {
    data: Vec<u8>,
    tags: Vec<u8>,
}

impl Model {
    fn push(&mut self, stream: u8, data: &[u8]) {
        self.data.extend_from_slice(data);
        self.tags.extend(std::iter::repeat_n(stream, data.len()));
    }
    fn len(&self) -> usize {
        self.data.len()
    }
    fn slice(&self, from: usize, to: usize) -> Model {
        Model {
            data: self.data[from..to].to_vec(),
            tags: self.tags[from..to].to_vec(),
        }
    }
}

/// What reads produced: runs of data separated by omissions (`runs.len()` is always
/// `omitted.len() + 1`; a run may be empty, e.g. when a read starts with an omission).
struct Seen {
    runs: Vec<Model>,
    omitted: Vec<u64>,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            runs: vec![Model::default()],
            omitted: Vec::new(),
        }
    }
}

impl Seen {
    fn add(&mut self, chunks: &[Chunk]) {
        for c in chunks {
            match c {
                Chunk::Data { stream, data } => {
                    assert!(matches!(stream, 1 | 2));
                    assert!(!data.is_empty(), "empty data chunk");
                    self.runs.last_mut().unwrap().push(*stream, data);
                }
                Chunk::Omitted { bytes } => {
                    assert!(*bytes > 0, "zero-byte omission");
                    self.omitted.push(*bytes);
                    self.runs.push(Model::default());
                }
            }
        }
    }

    /// Appends what a later read saw.
    fn extend(&mut self, later: Seen) {
        let mut runs = later.runs.into_iter();
        if let Some(first) = runs.next() {
            let last = self.runs.last_mut().unwrap();
            last.data.extend_from_slice(&first.data);
            last.tags.extend_from_slice(&first.tags);
        }
        self.runs.extend(runs);
        self.omitted.extend(later.omitted);
    }

    fn data_len(&self) -> u64 {
        self.runs.iter().map(|r| r.len() as u64).sum()
    }
}

struct Task<'a> {
    log: &'a OutputLog,
    id: &'a str,
    pos: OutputPos,
    model: Model,
}

impl<'a> Task<'a> {
    fn new(log: &'a OutputLog, id: &'a str) -> Task<'a> {
        Task {
            log,
            id,
            pos: OutputPos::default(),
            model: Model::default(),
        }
    }

    /// Appends `n` records of sizes up to `max` with alternating-ish streams.
    fn append_batch(&mut self, seed: u64, n: usize, max: usize) -> OutputPos {
        let bufs: Vec<(u8, Vec<u8>)> = (0..n)
            .map(|i| {
                let s = seed * 1000 + i as u64;
                let len = 1 + (s.wrapping_mul(2654435761) % max as u64) as usize;
                (1 + u8::from(s.is_multiple_of(3)), bytes(s, len))
            })
            .collect();
        let recs: Vec<Record<'_>> = bufs
            .iter()
            .map(|(stream, data)| Record {
                stream: *stream,
                data,
            })
            .collect();
        self.pos = self.log.append(self.id, self.pos, &recs).unwrap();
        for (stream, data) in &bufs {
            self.model.push(*stream, data);
        }
        assert_eq!(self.pos.total, self.model.len() as u64);
        self.pos
    }

    fn read_all(&self, cursor: Cursor, max: usize) -> (Seen, Cursor) {
        read_all(self.log, self.id, self.pos, cursor, max)
    }
}

fn read_all(
    log: &OutputLog,
    id: &str,
    pos: OutputPos,
    mut cursor: Cursor,
    max: usize,
) -> (Seen, Cursor) {
    let mut seen = Seen::default();
    for _ in 0..1_000_000 {
        let (chunks, next) = log.read(id, pos, cursor, max).unwrap();
        let data: usize = chunks
            .iter()
            .map(|c| match c {
                Chunk::Data { data, .. } => data.len(),
                Chunk::Omitted { .. } => 0,
            })
            .sum();
        assert!(data <= max.max(64 * 1024), "read returned {data} > {max}");
        if chunks.is_empty() {
            assert_eq!(next, cursor, "cursor moved without output");
            return (seen, cursor);
        }
        seen.add(&chunks);
        cursor = next;
    }
    panic!("read never reached the end");
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Checks a full read against the model: either everything, or head + one cut + tail.
fn assert_matches_model(seen: &Seen, model: &Model, expect_cut: bool) {
    if !expect_cut {
        assert!(
            seen.omitted.is_empty(),
            "unexpected omission {:?}",
            seen.omitted
        );
        assert_eq!(seen.runs.len(), 1);
        assert!(seen.runs[0].data == model.data, "data differs");
        assert!(seen.runs[0].tags == model.tags, "stream tags differ");
        return;
    }
    assert_eq!(seen.omitted.len(), 1, "expected exactly one omission");
    assert_eq!(seen.runs.len(), 2, "expected head and tail");
    let (head, tail) = (&seen.runs[0], &seen.runs[1]);
    let total = model.len();
    assert_eq!(
        head.len() as u64 + seen.omitted[0] + tail.len() as u64,
        total as u64
    );
    let want_head = model.slice(0, head.len());
    let want_tail = model.slice(total - tail.len(), total);
    assert!(head.data == want_head.data && head.tags == want_head.tags);
    assert!(tail.data == want_tail.data && tail.tags == want_tail.tags);
}

#[test]
fn round_trip_preserves_order_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 << 20);
    let mut t = Task::new(&log, "task-1");
    for b in 0..20 {
        t.append_batch(b, 7, 3000);
    }
    // Explicit interleaving with tiny records, too.
    let recs = [
        Record {
            stream: 1,
            data: b"out1\n",
        },
        Record {
            stream: 2,
            data: b"err1\n",
        },
        Record {
            stream: 2,
            data: b"",
        },
        Record {
            stream: 1,
            data: b"out2\n",
        },
    ];
    t.pos = log.append("task-1", t.pos, &recs).unwrap();
    for r in &recs {
        t.model.push(r.stream, r.data);
    }
    let (seen, end) = t.read_all(Cursor::default(), usize::MAX);
    assert_matches_model(&seen, &t.model, false);
    // Small budgets give the same bytes, just in more reads.
    let (seen2, end2) = t.read_all(Cursor::default(), 1000);
    assert_matches_model(&seen2, &t.model, false);
    assert_eq!(end, end2);
    // At pos: empty.
    let (chunks, c) = log.read("task-1", t.pos, end, 1 << 20).unwrap();
    assert!(chunks.is_empty());
    assert_eq!(c, end);
    // The tail of the read ends with the interleaved records, with tags intact.
    let last = seen.runs[0].len();
    assert_eq!(&seen.runs[0].data[last - 15..], b"out1\nerr1\nout2\n");
    assert_eq!(&seen.runs[0].tags[last - 15..last - 10], &[1; 5]);
    assert_eq!(&seen.runs[0].tags[last - 10..last - 5], &[2; 5]);
}

#[test]
fn empty_append_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let pos = log
        .append(
            "t",
            OutputPos::default(),
            &[Record {
                stream: 1,
                data: b"",
            }],
        )
        .unwrap();
    assert_eq!(pos, OutputPos::default());
    assert!(!dir.path().join("t").exists());
    let (chunks, c) = log.read("t", pos, Cursor::default(), 100).unwrap();
    assert!(chunks.is_empty());
    assert_eq!(c, Cursor::default());
}

#[test]
fn cap_keeps_head_and_tail_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * KIB;
    let log = OutputLog::new(dir.path(), cap);
    let mut t = Task::new(&log, "capped");
    let mut b = 0;
    while t.model.len() < 1 << 20 {
        t.append_batch(b, 5, 4000);
        b += 1;
        // Bounded at every step, not just at the end: the head, four kept tail segments,
        // the retired ones of the committed window, kept whole until the next roll (up to
        // four when one append spans several segments), and the spare (each at most cap/8).
        let size = dir_size(&dir.path().join("capped"));
        assert!(
            size <= cap + cap / 2 + cap / 8 + 9 * SEG_HDR,
            "{size} bytes on disk"
        );
    }
    let (seen, _) = t.read_all(Cursor::default(), 1 << 20);
    assert_matches_model(&seen, &t.model, true);
    // Head is (nearly) half the cap; the tail holds at least three full segments' worth.
    assert!(seen.runs[0].len() as u64 > cap / 2 - cap / 16);
    assert!(seen.runs[1].len() as u64 > 3 * cap / 8 - cap / 16);
    // Only the newest four tail segments are read; of older ones at most the last retired
    // one is left (kept for the committed window until the next roll), besides the spare.
    for entry in std::fs::read_dir(dir.path().join("capped")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if let Some(k) = layout::parse_tail_name(&name)
            && k + 3 < t.pos.tail_seg
        {
            assert!(k + 7 >= t.pos.tail_seg, "{name} left behind");
        } else {
            assert!(
                name == "head" || name == layout::SPARE || layout::parse_tail_name(&name).is_some(),
                "{name}"
            );
        }
    }
    // Once the task ended, only the head and the four kept segments stay.
    log.finish("capped", t.pos).unwrap();
    assert!(!dir.path().join("capped").join(layout::SPARE).exists());
    let size = dir_size(&dir.path().join("capped"));
    assert!(
        size <= cap + 4 * SEG_HDR,
        "{size} bytes on disk after finish"
    );
    let (seen3, _) = t.read_all(Cursor::default(), 1 << 20);
    assert_matches_model(&seen3, &t.model, true);
    for k in t.pos.tail_seg - 3..=t.pos.tail_seg {
        assert!(dir.path().join(format!("capped/tail.{k}")).exists());
    }
    // Same answer in small reads.
    let (seen2, _) = t.read_all(Cursor::default(), 777);
    assert_matches_model(&seen2, &t.model, true);
}

#[test]
fn single_huge_record_is_split_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * KIB;
    let log = OutputLog::new(dir.path(), cap);
    let data = bytes(9, 1 << 20);
    let pos = log
        .append(
            "big",
            OutputPos::default(),
            &[Record {
                stream: 2,
                data: &data,
            }],
        )
        .unwrap();
    assert_eq!(pos.total, 1 << 20);
    assert!(dir_size(&dir.path().join("big")) <= cap + cap / 2 + cap / 8 + 9 * SEG_HDR);
    log.finish("big", pos).unwrap();
    assert!(dir_size(&dir.path().join("big")) <= cap + 4 * SEG_HDR);
    let mut model = Model::default();
    model.push(2, &data);
    let (seen, _) = read_all(&log, "big", pos, Cursor::default(), usize::MAX);
    assert_matches_model(&seen, &model, true);
}

#[test]
fn follower_that_keeps_up_sees_every_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let mut t = Task::new(&log, "follow");
    let mut cursor = Cursor::default();
    let mut seen = Seen::default();
    let mut b = 0;
    while t.model.len() < 1 << 20 {
        t.append_batch(b, 3, 3000);
        b += 1;
        let (s, c) = t.read_all(cursor, 4096);
        assert!(s.omitted.is_empty(), "follower lost data: {:?}", s.omitted);
        seen.extend(s);
        cursor = c;
    }
    assert!(t.pos.tail_seg > 4, "test should have rolled the tail");
    assert_matches_model(&seen, &t.model, false);
}

#[test]
fn slow_follower_gets_omitted_then_continues() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * KIB;
    let log = OutputLog::new(dir.path(), cap);
    let mut t = Task::new(&log, "slow");

    // A follower in the head loses only the middle: the head is kept.
    t.append_batch(0, 4, 3000);
    let (first, cursor) = log.read("slow", t.pos, Cursor::default(), 2000).unwrap();
    let mut seen = Seen::default();
    seen.add(&first);
    while t.model.len() < 512 * KIB as usize {
        t.append_batch(t.model.len() as u64, 4, 3000);
    }
    let (rest, cursor) = t.read_all(cursor, 5000);
    seen.extend(rest);
    assert_matches_model(&seen, &t.model, true);

    // A follower in the tail that falls behind by more than the kept segments.
    let before = t.model.len();
    while t.model.len() < before + 200 * KIB as usize {
        t.append_batch(t.model.len() as u64, 4, 3000);
    }
    let (behind, _) = t.read_all(cursor, 5000);
    assert_eq!(behind.omitted.len(), 1, "{:?}", behind.omitted);
    assert_eq!(behind.runs[0].len(), 0, "the omission comes first");
    let since = (t.model.len() - before) as u64;
    assert_eq!(behind.omitted[0] + behind.runs[1].len() as u64, since);
    let tail = &behind.runs[1];
    let want = t.model.slice(t.model.len() - tail.len(), t.model.len());
    assert!(tail.data == want.data && tail.tags == want.tags);
    assert!(tail.len() as u64 > 3 * cap / 8 - cap / 16);
}

#[test]
fn reader_with_stale_pos_after_segments_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let mut t = Task::new(&log, "stale");
    while t.model.len() < 100 * KIB as usize {
        t.append_batch(t.model.len() as u64, 4, 3000);
    }
    let old = t.pos;
    // Read the head only, then let the tail move far past `old`.
    let (head, cursor) = log.read("stale", old, Cursor::default(), 1).unwrap();
    let mut seen = Seen::default();
    seen.add(&head);
    let (head_rest, cursor) = read_all(
        &log,
        "stale",
        OutputPos { tail_seg: 0, ..old },
        cursor,
        1 << 20,
    );
    seen.extend(head_rest);
    while t.model.len() < 300 * KIB as usize {
        t.append_batch(t.model.len() as u64, 4, 3000);
    }
    // Everything `old` covered beyond the head is gone: omitted up to `old`, cursor at `old`.
    let (s, cursor) = read_all(&log, "stale", old, cursor, 1 << 20);
    assert_eq!(s.data_len(), 0);
    assert_eq!(seen.data_len() + s.omitted.iter().sum::<u64>(), old.total);
    seen.extend(s);
    // With the current pos it resumes at the oldest kept tail data.
    let (s, _) = t.read_all(cursor, 1 << 20);
    seen.extend(s);
    let omitted: u64 = seen.omitted.iter().sum();
    assert_eq!(seen.data_len() + omitted, t.pos.total);
    let tail = seen.runs.last().unwrap();
    let want = t.model.slice(t.model.len() - tail.len(), t.model.len());
    assert!(tail.len() > 0 && tail.data == want.data && tail.tags == want.tags);
}

fn tail_segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| layout::parse_tail_name(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    v.sort_unstable();
    v
}

/// Batch 1 and 2 committed, batch 3 written but not committed (crash), then batch 3'.
fn crash_and_recover(cap: u64, batch_records: usize, expect_cut: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), cap);
    let mut t = Task::new(&log, "crashy");
    t.append_batch(1, batch_records, 3000);
    let pos2 = t.append_batch(2, batch_records, 3000);
    let model2 = t.model.clone();
    let pos3 = t.append_batch(3, batch_records * 2, 3000);
    assert!(pos3.total > pos2.total);

    // Server restarts with a fresh OutputLog; the database says pos2.
    let log = OutputLog::new(dir.path(), cap);
    log.recover("crashy", pos2).unwrap();
    log.recover("crashy", pos2).unwrap(); // idempotent
    let task_dir = dir.path().join("crashy");
    assert_eq!(
        std::fs::metadata(task_dir.join("head")).unwrap().len(),
        pos2.head_len
    );
    if pos2.tail_seg > 0 {
        let segs = tail_segments(&task_dir);
        assert_eq!(*segs.last().unwrap(), pos2.tail_seg, "{segs:?}");
        assert_eq!(
            std::fs::metadata(task_dir.join(format!("tail.{}", pos2.tail_seg)))
                .unwrap()
                .len(),
            pos2.tail_len
        );
    } else {
        assert!(tail_segments(&task_dir).is_empty());
    }

    let mut t = Task {
        log: &log,
        id: "crashy",
        pos: pos2,
        model: model2,
    };
    t.append_batch(33, batch_records, 2000);
    let (seen, _) = t.read_all(Cursor::default(), 10_000);
    assert_matches_model(&seen, &t.model, expect_cut);
}

#[test]
fn recover_discards_uncommitted_head_writes() {
    crash_and_recover(64 << 20, 10, false);
}

#[test]
fn recover_removes_newer_tail_segments() {
    // ~30 KiB per batch against 8 KiB segments: batch 3 rolls several segments past pos2.
    crash_and_recover(64 * KIB, 20, true);
}

#[test]
fn recover_with_pos_in_head_removes_all_tail_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let mut t = Task::new(&log, "h");
    let pos1 = t.append_batch(1, 3, 1000);
    let model1 = t.model.clone();
    t.append_batch(2, 100, 3000);
    assert!(t.pos.tail_seg > 1);
    log.recover("h", pos1).unwrap();
    assert!(tail_segments(&dir.path().join("h")).is_empty());
    let (seen, _) = read_all(&log, "h", pos1, Cursor::default(), 1 << 20);
    assert_matches_model(&seen, &model1, false);
}

#[test]
fn retry_from_old_pos_without_recover_overwrites() {
    // A failed DB commit: the caller appends again from the same pos, no restart.
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let mut t = Task::new(&log, "retry");
    t.append_batch(1, 60, 3000);
    assert!(t.pos.tail_seg > 4);
    let pos = t.pos;
    let model = t.model.clone();
    t.append_batch(2, 40, 3000); // not committed
    t.pos = pos;
    t.model = model;
    t.append_batch(3, 10, 1500);
    let (seen, _) = t.read_all(Cursor::default(), 1 << 20);
    assert_matches_model(&seen, &t.model, true);
}

#[test]
fn recover_pads_files_shorter_than_committed() {
    // Power loss can leave a file shorter than what was committed; the log must stay
    // readable and appendable, reporting what it still has.
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 << 20);
    let mut t = Task::new(&log, "short");
    t.append_batch(1, 10, 3000);
    let head = dir.path().join("short/head");
    let len = std::fs::metadata(&head).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&head)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let log = OutputLog::new(dir.path(), 64 << 20);
    log.recover("short", t.pos).unwrap();
    assert_eq!(std::fs::metadata(&head).unwrap().len(), len);
    let before = t.model.len();
    t.append_batch(2, 5, 3000);
    let (seen, _) = t.read_all(Cursor::default(), 1 << 20);
    assert!(seen.omitted.is_empty());
    let got = &seen.runs[0];
    assert!(got.len() < t.model.len());
    // What survives is a prefix of the original, and everything appended afterwards.
    let after = t.model.len() - before;
    assert!(got.data[got.len() - after..] == t.model.data[before..]);
    let kept = got.len() - after;
    assert!(kept > 0 && got.data[..kept] == t.model.data[..kept]);
}

#[test]
fn invalid_task_ids_and_streams_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let rec = [Record {
        stream: 1,
        data: b"x",
    }];
    let long = "a".repeat(129);
    for id in [
        "",
        "..",
        "../etc",
        "a/b",
        "a.b",
        "x y",
        "é",
        "a\0b",
        long.as_str(),
    ] {
        let p = OutputPos::default();
        assert!(matches!(
            log.append(id, p, &rec),
            Err(OutlogError::InvalidTaskId(_))
        ));
        assert!(matches!(
            log.recover(id, p),
            Err(OutlogError::InvalidTaskId(_))
        ));
        assert!(matches!(
            log.read(id, p, Cursor::default(), 10),
            Err(OutlogError::InvalidTaskId(_))
        ));
        assert!(matches!(log.remove(id), Err(OutlogError::InvalidTaskId(_))));
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    log.append(
        "0190b2c4-7e1f-7a3b-9c2d-abcdef012345_X",
        OutputPos::default(),
        &rec,
    )
    .unwrap();
    for stream in [0, 3, 255] {
        let err = log.append(
            "ok",
            OutputPos::default(),
            &[
                Record {
                    stream: 1,
                    data: b"fine",
                },
                Record {
                    stream,
                    data: b"bad",
                },
            ],
        );
        assert!(matches!(err, Err(OutlogError::InvalidStream(s)) if s == stream));
    }
    // Nothing was written for the rejected batches.
    assert!(!dir.path().join("ok").exists());
    let bad = OutputPos {
        total: 1,
        head_len: 10,
        tail_seg: 1,
        tail_len: 3,
    };
    assert!(matches!(
        log.append("ok", bad, &rec),
        Err(OutlogError::InvalidPos { .. })
    ));
}

#[test]
fn remove_deletes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let mut t = Task::new(&log, "gone");
    t.append_batch(1, 50, 3000);
    let mut other = Task::new(&log, "kept");
    other.append_batch(2, 3, 100);
    assert!(dir.path().join("gone").exists());
    let used = log.usage().unwrap();
    let freed = log.remove("gone").unwrap();
    assert!(freed > 0);
    assert!(!dir.path().join("gone").exists());
    assert!(dir.path().join("kept/head").exists());
    assert_eq!(log.usage().unwrap(), used - freed);
    assert_eq!(log.remove("gone").unwrap(), 0); // already gone: fine
    // The id can be reused from scratch.
    let mut again = Task::new(&log, "gone");
    again.append_batch(3, 2, 100);
    let (seen, _) = again.read_all(Cursor::default(), 1 << 20);
    assert_matches_model(&seen, &again.model, false);
}

#[test]
fn more_tasks_than_cached_handles() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 * KIB);
    let ids: Vec<String> = (0..HANDLE_CACHE + 40).map(|i| format!("t{i}")).collect();
    let mut tasks: Vec<Task<'_>> = ids.iter().map(|id| Task::new(&log, id)).collect();
    for round in 0..3 {
        for (i, t) in tasks.iter_mut().enumerate() {
            t.append_batch((round * 1000 + i) as u64, 2, 200);
        }
    }
    assert!(log.handles.len() <= HANDLE_CACHE);
    for t in &tasks {
        let (seen, _) = t.read_all(Cursor::default(), 1 << 20);
        assert_matches_model(&seen, &t.model, false);
    }
}

#[test]
fn concurrent_follower_sees_everything() {
    use std::sync::{Arc, Mutex};
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OutputLog>();

    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(OutputLog::new(dir.path(), 64 << 20));
    // The "database": the committed pos, published after each append.
    let committed = Arc::new(Mutex::new((OutputPos::default(), false)));
    let writer = {
        let (log, committed) = (Arc::clone(&log), Arc::clone(&committed));
        std::thread::spawn(move || {
            let mut t = Task::new(&log, "live");
            for b in 0..300 {
                t.append_batch(b, 4, 8000);
                committed.lock().unwrap().0 = t.pos;
            }
            committed.lock().unwrap().1 = true;
            t.model
        })
    };
    let mut seen = Seen::default();
    let mut cursor = Cursor::default();
    loop {
        let (pos, done) = *committed.lock().unwrap();
        let (chunks, next) = log.read("live", pos, cursor, 16 * 1024).unwrap();
        seen.add(&chunks);
        cursor = next;
        if done && chunks.is_empty() {
            break;
        }
    }
    let model = writer.join().unwrap();
    assert_matches_model(&seen, &model, false);
}

/// Rough throughput check: `cargo test -p herd-outlog --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let log = OutputLog::new(dir.path(), 64 << 20);
    let data = bytes(1, 64 * 1024);
    let recs: Vec<Record<'_>> = (0..16)
        .map(|_| Record {
            stream: 1,
            data: &data,
        })
        .collect();
    let mut pos = OutputPos::default();
    let start = std::time::Instant::now();
    while pos.total < 1 << 30 {
        pos = log.append("fast", pos, &recs).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("append: {:.0} MB/s", pos.total as f64 / secs / 1e6);
    let start = std::time::Instant::now();
    let (mut cursor, mut n) = (Cursor::default(), 0u64);
    loop {
        let (chunks, next) = log.read("fast", pos, cursor, 1 << 20).unwrap();
        if chunks.is_empty() {
            break;
        }
        for c in &chunks {
            if let Chunk::Data { data, .. } = c {
                n += data.len() as u64;
            }
        }
        cursor = next;
    }
    eprintln!(
        "read: {:.0} MB/s",
        n as f64 / start.elapsed().as_secs_f64() / 1e6
    );
}

/// A reader inside a tail segment whose file was since reused for a later segment (its
/// bytes are another part of the stream now) reports that part as omitted: it never passes
/// on bytes from the wrong offset, and the accounting stays exact.
#[test]
fn reader_of_a_reused_segment_gets_omitted_not_foreign_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * KIB;
    let log = OutputLog::new(dir.path(), cap);
    let mut t = Task::new(&log, "r");
    let mut b = 0;
    while t.pos.tail_seg < 6 {
        t.append_batch(b, 5, 3000);
        b += 1;
    }
    let pos0 = t.pos;
    let k = layout::oldest_kept(pos0.tail_seg);
    // Read in small steps until the cursor is inside segment k.
    let mut c = Cursor::default();
    let mut seen = Seen::default();
    while !(c.seg == k && c.off > SEG_HDR + 100) {
        let (chunks, next) = log.read("r", pos0, c, 500).unwrap();
        assert!(!chunks.is_empty());
        seen.add(&chunks);
        c = next;
    }
    // Segment k's file is reused: a new header and other bytes in the same frame layout
    // (what a reader holding the old file sees once the tail has moved on).
    let path = dir.path().join(format!("r/tail.{k}"));
    let mut file = std::fs::read(&path).unwrap();
    let start = u64::from_le_bytes(file[..8].try_into().unwrap());
    file[..8].copy_from_slice(&(start + 1_000_000).to_le_bytes());
    let mut off = SEG_HDR as usize;
    while off + 5 <= file.len() {
        let len = u32::from_le_bytes(file[off + 1..off + 5].try_into().unwrap()) as usize;
        for x in &mut file[off + 5..off + 5 + len] {
            *x ^= 0x5a;
        }
        off += 5 + len;
    }
    std::fs::write(&path, file).unwrap();

    let mut at = c.data as usize;
    let mut omitted = 0;
    loop {
        let (chunks, next) = log.read("r", pos0, c, 700).unwrap();
        if chunks.is_empty() {
            break;
        }
        for ch in &chunks {
            match ch {
                Chunk::Data { stream, data } => {
                    assert_eq!(&t.model.data[at..at + data.len()], &data[..], "at {at}");
                    assert!(
                        t.model.tags[at..at + data.len()]
                            .iter()
                            .all(|s| s == stream)
                    );
                    at += data.len();
                }
                Chunk::Omitted { bytes } => {
                    omitted += 1;
                    at += *bytes as usize;
                }
            }
        }
        c = next;
    }
    assert_eq!(at as u64, pos0.total);
    assert!(omitted > 0);
}
