//! Spool tests against real files in a temporary directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use herd_proto::v1::{Exited, Output, Started, TaskEvent, task_event::Kind};
use prost::Message;

use super::*;

fn output(task: &str, seq: u64, data: &[u8]) -> TaskEvent {
    TaskEvent {
        task_id: task.to_owned(),
        seq,
        kind: Some(Kind::Output(Output {
            stream: 1,
            data: Bytes::copy_from_slice(data),
        })),
    }
}

fn started(task: &str) -> TaskEvent {
    TaskEvent {
        task_id: task.to_owned(),
        seq: 1,
        kind: Some(Kind::Started(Started { pid: 42 })),
    }
}

fn exited(task: &str, seq: u64) -> TaskEvent {
    TaskEvent {
        task_id: task.to_owned(),
        seq,
        kind: Some(Kind::Exited(Exited {
            code: Some(0),
            detail: "ok".into(),
            ..Default::default()
        })),
    }
}

/// Payload whose bytes depend on seq, so a wrong event cannot pass as the right one.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// Started + outputs 2..=n, each output `len` bytes.
fn fill(spool: &mut Spool, task: &str, n: u64, len: usize) -> Vec<TaskEvent> {
    let mut all = vec![started(task)];
    spool.append(&all[0]).unwrap();
    for seq in 2..=n {
        let ev = output(task, seq, &payload(seq, len));
        spool.append(&ev).unwrap();
        all.push(ev);
    }
    all
}

fn read_all(spool: &mut Spool, task: &str, from: u64, max_bytes: usize) -> Vec<TaskEvent> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let mut batch = Vec::new();
        spool.read(task, next, max_bytes, &mut batch).unwrap();
        let Some(last) = batch.last() else { break };
        next = last.seq + 1;
        out.extend(batch);
    }
    out
}

fn segments(dir: &Path, task: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("tasks").join(task))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn task_info(spool: &Spool, task: &str) -> SpoolTask {
    spool
        .tasks()
        .into_iter()
        .find(|t| t.task_id == task)
        .unwrap()
}

#[test]
fn append_then_read_back_in_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 2048).unwrap();
    let all = fill(&mut spool, "t1", 200, 100);
    assert!(segments(dir.path(), "t1").len() > 5, "should have rolled");

    let mut got = Vec::new();
    let mut next = 1;
    let mut calls = 0;
    loop {
        let mut batch = Vec::new();
        spool.read("t1", next, 350, &mut batch).unwrap();
        if batch.is_empty() {
            break;
        }
        // Stops as soon as the budget is reached, and only then (or at the end).
        let sizes: Vec<usize> = batch.iter().map(|e| e.encoded_len()).collect();
        let before_last: usize = sizes[..sizes.len() - 1].iter().sum();
        assert!(before_last < 350, "batch overshot: {sizes:?}");
        let total: usize = sizes.iter().sum();
        assert!(
            total >= 350 || batch.last().unwrap().seq == 200,
            "{sizes:?}"
        );
        next = batch.last().unwrap().seq + 1;
        got.extend(batch);
        calls += 1;
    }
    assert!(calls > 40);
    assert_eq!(got, all);

    // max_bytes 0 still yields exactly one event.
    let mut one = Vec::new();
    spool.read("t1", 7, 0, &mut one).unwrap();
    assert_eq!(one, vec![all[6].clone()]);
    // Reading past the end yields nothing; unknown tasks yield nothing.
    let mut none = Vec::new();
    spool.read("t1", 201, 1 << 20, &mut none).unwrap();
    spool.read("nope", 1, 1 << 20, &mut none).unwrap();
    assert!(none.is_empty());
}

#[test]
fn interleaved_append_and_read_sees_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 1024).unwrap();
    spool.append(&started("t")).unwrap();
    let mut next = 1;
    let mut seen = Vec::new();
    for seq in 2..=100u64 {
        spool.append(&output("t", seq, &payload(seq, 90))).unwrap();
        if seq % 3 == 0 {
            let mut batch = Vec::new();
            spool.read("t", next, 1 << 20, &mut batch).unwrap();
            next = batch.last().map_or(next, |e| e.seq + 1);
            seen.extend(batch.into_iter().map(|e| e.seq));
        }
    }
    seen.extend(
        read_all(&mut spool, "t", next, 1 << 20)
            .into_iter()
            .map(|e| e.seq),
    );
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
}

#[test]
fn reopen_recovers_last_acked_finished() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open_with_segment_target(dir.path(), 1024).unwrap();
        fill(&mut spool, "a", 30, 50);
        spool.append(&exited("a", 31)).unwrap();
        spool.ack("a", 12).unwrap();
        fill(&mut spool, "b", 5, 10);
    }
    let spool = Spool::open_with_segment_target(dir.path(), 1024).unwrap();
    assert_eq!(
        spool.tasks(),
        vec![
            SpoolTask {
                task_id: "a".into(),
                last_seq: 31,
                acked_seq: 12,
                finished: true
            },
            SpoolTask {
                task_id: "b".into(),
                last_seq: 5,
                acked_seq: 0,
                finished: false
            },
        ]
    );
    assert_eq!(spool.last_seq("a"), 31);
    assert_eq!(spool.last_seq("zzz"), 0);
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let all = {
        let mut spool = Spool::open(dir.path()).unwrap();
        fill(&mut spool, "t", 10, 64)
    };
    let seg = segments(dir.path(), "t").pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();

    // A partial record: a header promising 1000 bytes followed by only 3.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&1000u32.to_le_bytes()).unwrap();
    f.write_all(b"abc").unwrap();
    drop(f);

    let mut spool = Spool::open(dir.path()).unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(spool.last_seq("t"), 10);
    let ev11 = output("t", 11, b"after the tear");
    spool.append(&ev11).unwrap();
    drop(spool);

    // Garbage that has a plausible length but does not decode.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&4u32.to_le_bytes()).unwrap();
    f.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    drop(f);

    let mut spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.last_seq("t"), 11);
    spool.append(&exited("t", 12)).unwrap();
    let mut expected = all;
    expected.push(ev11);
    expected.push(exited("t", 12));
    assert_eq!(read_all(&mut spool, "t", 1, 100), expected);
    assert!(task_info(&spool, "t").finished);
}

#[test]
fn torn_header_only_segment_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open_with_segment_target(dir.path(), 256).unwrap();
        fill(&mut spool, "t", 20, 100);
    }
    // Simulate a crash right after rolling: a new segment with two bytes of header.
    let next = dir.path().join("tasks/t").join(format!("{:020}.seg", 21));
    fs::write(&next, [7u8, 0]).unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 256).unwrap();
    assert!(!next.exists());
    assert_eq!(spool.last_seq("t"), 20);
    spool.append(&output("t", 21, b"x")).unwrap();
    assert_eq!(read_all(&mut spool, "t", 19, 1).len(), 3);
}

#[test]
fn ack_deletes_only_fully_acknowledged_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 1000).unwrap();
    fill(&mut spool, "t", 100, 100);
    let before = segments(dir.path(), "t");
    assert!(before.len() >= 10);
    let firsts: Vec<u64> = before
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();

    // Acknowledge up to the middle of the third segment.
    let mid = firsts[2] + 1;
    spool.ack("t", mid).unwrap();
    let after = segments(dir.path(), "t");
    assert!(!before[0].exists());
    assert!(!before[1].exists());
    assert!(before[2].exists(), "partially acknowledged segment kept");
    assert_eq!(after.len(), before.len() - 2);
    assert_eq!(task_info(&spool, "t").acked_seq, mid);

    // Acking exactly the last seq of a segment releases it too.
    spool.ack("t", firsts[3] - 1).unwrap();
    assert!(!before[2].exists());
    // Stale and out-of-range acks are harmless.
    spool.ack("t", 3).unwrap();
    spool.ack("t", 10_000).unwrap();
    assert_eq!(task_info(&spool, "t").acked_seq, 100);
    // The final (active) segment stays for further appends.
    assert_eq!(
        segments(dir.path(), "t"),
        vec![before.last().unwrap().clone()]
    );
    spool.append(&output("t", 101, b"more")).unwrap();
    let got = read_all(&mut spool, "t", 101, 1 << 20);
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![101]);
}

#[test]
fn read_from_acked_plus_one_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all = {
        let mut spool = Spool::open_with_segment_target(dir.path(), 700).unwrap();
        let all = fill(&mut spool, "t", 60, 80);
        // Read some (moves the cursor), then ack part of it.
        let _ = read_all(&mut spool, "t", 1, 500);
        spool.ack("t", 37).unwrap();
        all
    };
    let mut spool = Spool::open_with_segment_target(dir.path(), 700).unwrap();
    let info = task_info(&spool, "t");
    assert_eq!(info.acked_seq, 37);
    let got = read_all(&mut spool, "t", info.acked_seq + 1, 300);
    assert_eq!(got, all[37..].to_vec());

    // A from_seq below what is retained starts at the oldest retained event, which is
    // never later than acked + 1.
    let mut batch = Vec::new();
    spool.read("t", 1, 1, &mut batch).unwrap();
    assert!(batch[0].seq <= 38);
    // Random seeks land exactly.
    for from in [59, 40, 45, 38, 60] {
        let mut b = Vec::new();
        spool.read("t", from, 1, &mut b).unwrap();
        assert_eq!(b, vec![all[from as usize - 1].clone()]);
    }
}

#[test]
fn finished_and_fully_acked_task_is_tombstoned() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 500).unwrap();
    fill(&mut spool, "job-1", 20, 60);
    spool.append(&exited("job-1", 21)).unwrap();
    fill(&mut spool, "other", 3, 5);
    assert!(!spool.is_done("job-1"));

    spool.ack("job-1", 20).unwrap();
    assert!(dir.path().join("tasks/job-1").exists());
    assert!(!spool.is_done("job-1"));

    spool.ack("job-1", 21).unwrap();
    assert!(!dir.path().join("tasks/job-1").exists());
    assert!(dir.path().join("done/job-1").exists());
    assert!(spool.is_done("job-1"));
    assert_eq!(spool.last_seq("job-1"), 0);
    let ids: Vec<String> = spool.tasks().into_iter().map(|t| t.task_id).collect();
    assert_eq!(ids, vec!["other".to_string()]);
    // A duplicate ack is fine; re-spooling a done task is refused.
    spool.ack("job-1", 21).unwrap();
    assert!(matches!(
        spool.append(&started("job-1")),
        Err(SpoolError::AlreadyDone(_))
    ));
    drop(spool);

    let spool = Spool::open(dir.path()).unwrap();
    assert!(spool.is_done("job-1"));
    assert!(!spool.is_done("other"));
}

#[test]
fn old_tombstones_pruned_and_interrupted_retire_completed() {
    let dir = tempfile::tempdir().unwrap();
    drop(Spool::open(dir.path()).unwrap());
    let old = dir.path().join("done/old");
    fs::write(&old, b"done\n").unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    // Crash between tombstone and directory removal.
    fs::write(dir.path().join("done/half"), b"done\n").unwrap();
    fs::create_dir_all(dir.path().join("tasks/half")).unwrap();
    fs::write(
        dir.path().join("tasks/half/00000000000000000001.seg"),
        b"junk",
    )
    .unwrap();

    let spool = Spool::open(dir.path()).unwrap();
    assert!(!old.exists());
    assert!(!spool.is_done("old"));
    assert!(spool.is_done("half"));
    assert!(!dir.path().join("tasks/half").exists());
    assert!(spool.tasks().is_empty());
}

#[test]
fn finish_completed_by_reopen_when_ack_persisted_before_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path()).unwrap();
        fill(&mut spool, "t", 3, 10);
        spool.append(&exited("t", 4)).unwrap();
        spool.ack("t", 3).unwrap();
    }
    // The acked file says everything is acknowledged but the tombstone never got written.
    fs::write(dir.path().join("tasks/t/acked"), "4\n").unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    assert!(spool.is_done("t"));
    assert!(spool.tasks().is_empty());
}

#[test]
fn seq_gap_and_events_after_exit_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path()).unwrap();
    assert!(matches!(
        spool.append(&output("t", 2, b"x")),
        Err(SpoolError::SeqGap {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(spool.tasks().is_empty());
    spool.append(&started("t")).unwrap();
    for bad in [1, 3, 100] {
        assert!(matches!(
            spool.append(&output("t", bad, b"x")),
            Err(SpoolError::SeqGap { expected: 2, .. })
        ));
    }
    spool.append(&exited("t", 2)).unwrap();
    assert!(matches!(
        spool.append(&output("t", 3, b"x")),
        Err(SpoolError::Finished(_))
    ));
    assert_eq!(spool.last_seq("t"), 2);
}

#[test]
fn invalid_task_ids_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path()).unwrap();
    let long = "a".repeat(129);
    for id in [
        "",
        "..",
        "a/b",
        "../etc",
        "x y",
        "é",
        ".hidden",
        long.as_str(),
    ] {
        let mut ev = started(id);
        ev.task_id = id.to_owned();
        assert!(
            matches!(spool.append(&ev), Err(SpoolError::InvalidTaskId(_))),
            "{id:?} accepted"
        );
    }
    spool
        .append(&started("0198c4a2-7b1e-7c3d-9f00-abcdef012345_X"))
        .unwrap();
    assert_eq!(fs::read_dir(dir.path().join("tasks")).unwrap().count(), 1);
}

#[test]
fn many_tasks_exceeding_cursor_cap_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 300).unwrap();
    let n = MAX_READ_CURSORS + 10;
    let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    for id in &ids {
        fill(&mut spool, id, 10, 40);
    }
    // Round-robin reads of two events at a time across all tasks.
    let mut next = vec![1u64; n];
    for _ in 0..5 {
        for (i, id) in ids.iter().enumerate() {
            let mut b = Vec::new();
            spool.read(id, next[i], 1, &mut b).unwrap();
            spool.read(id, next[i] + 1, 1, &mut b).unwrap();
            assert_eq!(
                b.iter().map(|e| e.seq).collect::<Vec<_>>(),
                vec![next[i], next[i] + 1]
            );
            assert!(b.iter().all(|e| &e.task_id == id));
            next[i] += 2;
        }
    }
    let open = spool.tasks.values().filter(|t| t.cursor.is_some()).count();
    assert!(open <= MAX_READ_CURSORS);
}

/// Deterministic pseudo-random mix of appends, acks, reads and reopens, checked against
/// a simple in-memory model.
#[test]
fn randomized_against_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut spool = Spool::open_with_segment_target(dir.path(), 600).unwrap();
    let tasks = ["a", "b", "c"];
    let mut model: Vec<Vec<TaskEvent>> = vec![Vec::new(); 3];
    let mut acked = [0u64; 3];
    let mut read_next = [1u64; 3];
    for _ in 0..3000 {
        let t = rand(3) as usize;
        let id = tasks[t];
        match rand(10) {
            0..=5 => {
                let seq = model[t].len() as u64 + 1;
                let len = rand(200) as usize;
                let ev = output(id, seq, &payload(seq, len));
                spool.append(&ev).unwrap();
                model[t].push(ev);
            }
            6 => {
                let last = model[t].len() as u64;
                if last > acked[t] {
                    let to = acked[t] + 1 + rand(last - acked[t]);
                    spool.ack(id, to).unwrap();
                    acked[t] = to;
                    // Acknowledged events may be gone; a sender never re-reads them.
                    read_next[t] = read_next[t].max(to + 1);
                }
            }
            7 | 8 => {
                let mut b = Vec::new();
                spool
                    .read(id, read_next[t], rand(500) as usize, &mut b)
                    .unwrap();
                let from = read_next[t] as usize;
                assert_eq!(b.as_slice(), &model[t][from - 1..from - 1 + b.len()]);
                if from <= model[t].len() {
                    assert!(!b.is_empty());
                }
                read_next[t] += b.len() as u64;
            }
            _ => {
                if rand(10) == 0 {
                    drop(spool);
                    spool = Spool::open_with_segment_target(dir.path(), 600).unwrap();
                    // Reconnect: replay from acked + 1 (acked is persisted on drop).
                    for i in 0..3 {
                        read_next[i] = acked[i] + 1;
                    }
                }
            }
        }
    }
    for (t, id) in tasks.iter().enumerate() {
        let got = read_all(&mut spool, id, acked[t] + 1, 1000);
        assert_eq!(got.as_slice(), &model[t][acked[t] as usize..]);
        assert_eq!(spool.last_seq(id), model[t].len() as u64);
    }
}

/// Released segments are reused for later ones; their stale records never show: not in
/// reads, and not after a reopen (which scans every record), whether the task goes on or
/// finished.
#[test]
fn reused_segments_hold_only_their_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_with_segment_target(dir.path(), 1000).unwrap();
    let mut all = fill(&mut spool, "t", 40, 100);
    for round in 0..5u64 {
        // Release what was sent so far, then write more (into reused files).
        let last = task_info(&spool, "t").last_seq;
        spool.ack("t", last - 3).unwrap();
        assert!(dir.path().join("tasks/t/spare").exists() || round > 0);
        for seq in last + 1..=last + 25 {
            let ev = output("t", seq, &payload(seq, 60 + (seq as usize % 50)));
            spool.append(&ev).unwrap();
            all.push(ev);
        }
        let acked = task_info(&spool, "t").acked_seq;
        let want: Vec<TaskEvent> = all.iter().filter(|e| e.seq > acked).cloned().collect();
        assert_eq!(read_all(&mut spool, "t", acked + 1, 1 << 20), want);
        // Reopen, as after an agent restart.
        drop(spool);
        spool = Spool::open_with_segment_target(dir.path(), 1000).unwrap();
        assert_eq!(task_info(&spool, "t").last_seq, all.last().unwrap().seq);
        assert_eq!(read_all(&mut spool, "t", acked + 1, 1 << 20), want);
    }
    let next = task_info(&spool, "t").last_seq + 1;
    spool.append(&exited("t", next)).unwrap();
    drop(spool);
    let mut spool = Spool::open_with_segment_target(dir.path(), 1000).unwrap();
    let info = task_info(&spool, "t");
    assert!(info.finished);
    assert_eq!(info.last_seq, next);
    let got = read_all(&mut spool, "t", info.acked_seq + 1, 1 << 20);
    assert_eq!(got.last().unwrap().seq, next);
    assert_eq!(got.len() as u64, next - info.acked_seq);
}

/// Everything the spool writes is its owner's only, and a spool dir opened to others (by an
/// earlier version, or since) is closed again when the spool opens.
#[test]
fn spool_files_and_dirs_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    for d in [root.clone(), root.join("tasks"), root.join("done")] {
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    {
        let mut spool = Spool::open_with_segment_target(&root, 1024).unwrap();
        fill(&mut spool, "a", 30, 50);
        spool.ack("a", 12).unwrap();
        fill(&mut spool, "b", 5, 10);
        spool.append(&exited("b", 6)).unwrap();
        spool.ack("b", 6).unwrap();
        assert!(spool.is_done("b"));
    }
    let mut seen = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(d) = todo.pop() {
        seen.push(d.clone());
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                seen.push(e.path());
            }
        }
    }
    for name in ["acked", "b", "00000000000000000001.seg"] {
        assert!(
            seen.iter().any(|p| p.ends_with(name)),
            "no {name}: {seen:?}"
        );
    }
    for p in &seen {
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
    }
}
