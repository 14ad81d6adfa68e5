//! `herd fetch`: each machine's file arrives whole under `LOCAL_DIR/<machine>/` (its own
//! checksum and mode), across an agent restart in the middle of sending it; a missing file or
//! a relative path ends with one line saying why.
//!
//! The agents share this machine, so each runs in a mount namespace of its own where
//! `DIR/src` is its own directory `DIR/<agent>`: one remote path, a different file per agent.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::files::{make_file, sha256, start_agent_mounted};
use crate::harness::*;

const SIZE: usize = 100 << 20;

/// Starts agent `name` in a mount namespace where `dir/src` is `dir/name`.
fn start_agent(s: &Server, dir: &Path, name: &str, token: &str) -> Agent {
    start_agent_mounted(s, dir, name, token, "src", false)
}

fn start_fleet(s: &Server, dir: &Path, names: &[&str]) -> Vec<Agent> {
    let token = s.join_token(names.len()).unwrap();
    let agents = names
        .iter()
        .map(|n| start_agent(s, dir, n, &token))
        .collect();
    s.wait_online(names).unwrap();
    agents
}

/// Gives machine `name` its own `big.bin`: `base` with its first bytes changed, and `mode`.
/// Its SHA-256.
fn own_copy(dir: &Path, base: &Path, name: &str, mode: u32) -> String {
    use std::io::{Seek as _, Write as _};
    let path = dir.join(name).join("big.bin");
    std::fs::copy(base, &path).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(name.as_bytes()).unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    sha256(&path)
}

fn check_fetched(local: &Path, machine: &str, digest: &str, mode: u32) {
    let got = local.join(machine).join("big.bin");
    assert_eq!(
        sha256(&got),
        digest,
        "{machine}: content of {}",
        got.display()
    );
    let m = std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777;
    assert_eq!(m, mode, "{machine}: mode of {}", got.display());
    assert!(
        !local.join(machine).join("big.bin.herd-part").exists(),
        "{machine}: the part file is gone"
    );
}

fn remote(dir: &Path) -> String {
    dir.join("src").join("big.bin").display().to_string()
}

#[test]
fn fetch_brings_each_machine_its_own_file_with_checksum_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let names = ["fetch-1", "fetch-2", "fetch-3"];
    let _agents = start_fleet(&s, dir.path(), &names);
    let base = dir.path().join("base.bin");
    make_file(&base, SIZE);
    let modes = [0o750, 0o640, 0o604];
    let digests: Vec<String> = names
        .iter()
        .zip(modes)
        .map(|(n, m)| own_copy(dir.path(), &base, n, m))
        .collect();
    assert_ne!(digests[0], digests[1]);

    let local = dir.path().join("got");
    let out = s.run(&[
        "fetch",
        "-t",
        "fetch-*",
        &remote(dir.path()),
        local.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "herd fetch failed: {}\n{}",
        stderr(&out),
        s.log_tail()
    );
    for ((n, d), m) in names.iter().zip(&digests).zip(modes) {
        check_fetched(&local, n, d, m);
    }
    // Kept on the server 0600, in a 0700 directory, until retention prunes the run.
    let kept = s.data_dir.join("fetched");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let whole: Vec<_> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none())
        .collect();
    assert_eq!(whole.len(), 3, "{whole:?}");
    for p in &whole {
        assert_eq!(
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The run's audit entry says what was fetched.
    let audit = stdout(&s.run(&["audit"]));
    assert!(audit.contains("herd fetch"), "audit: {audit}");
}

#[test]
fn fetch_completes_across_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut agents = start_fleet(&s, dir.path(), &["sender"]);
    let base = dir.path().join("base.bin");
    make_file(&base, SIZE);
    let digest = own_copy(dir.path(), &base, "sender", 0o640);
    let kept = s.data_dir.join("fetched");
    let part_len = || -> u64 {
        std::fs::read_dir(&kept)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };

    let local = dir.path().join("got");
    let fetch = s
        .cli()
        .args([
            "fetch",
            "-t",
            "sender",
            &remote(dir.path()),
            local.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the agent as soon as the server holds part of the file.
    let mut seen = 0;
    for _ in 0..200_000 {
        seen = part_len();
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    agents[0].kill();
    let seen = part_len().max(seen);
    assert!(
        seen > 0 && (seen as usize) < SIZE,
        "the fetch was not caught half-way ({seen} bytes held)"
    );
    let again = start_agent(&s, dir.path(), "sender", "");
    let out = fetch.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "herd fetch failed: {}\nagent log:\n{}",
        stderr(&out),
        again.log()
    );
    check_fetched(&local, "sender", &digest, 0o640);
    assert!(
        again.log().contains("resuming a fetch"),
        "the restarted agent resumed the fetch:\n{}",
        again.log()
    );
}

#[test]
fn fetch_refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = start_fleet(&s, dir.path(), &["lacking"]);
    let local = dir.path().join("got");

    // A file the machine does not have.
    let out = s.run(&[
        "fetch",
        "-t",
        "lacking",
        &remote(dir.path()),
        local.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("herd: cannot fetch") && text.contains("no such file on this machine —"),
        "{text}"
    );
    assert!(!local.join("lacking").join("big.bin").exists());

    // A directory.
    let out = s.run(&["fetch", "-t", "lacking", "/tmp", local.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("not a regular file"), "{text}");

    // A relative path, refused before anything runs.
    let out = s.run(&["fetch", "-t", "lacking", "big.bin", local.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad path \"big.bin\"") && err.lines().count() == 1,
        "{err}"
    );
}
