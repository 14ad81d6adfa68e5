//! `herd cp`: a file uploaded once reaches every machine whole (checksum and mode), across an
//! agent restart in the middle of the copy; a corrupted blob or a refused destination ends
//! the task with one line saying why.
//!
//! The agents share this machine, so each runs in a mount namespace of its own where
//! `DIR/dest` is its own directory `DIR/<agent>` (read-only for the refusal case): one
//! destination path, a different file per agent, all visible from here.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SIZE: usize = 100 << 20;

/// A file of `size` pseudo-random bytes with mode 0750; its SHA-256.
pub(crate) fn make_file(path: &Path, size: usize) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut left = size;
    while left > 0 {
        buf.clear();
        while buf.len() < (1 << 20).min(left) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate((1 << 20).min(left));
        f.write_all(&buf).unwrap();
        left -= buf.len();
    }
    drop(f);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750)).unwrap();
    sha256(path)
}

pub(crate) fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Starts agent `name` in a mount namespace where `dir/dest` is `dir/name` (read-only if
/// `ro`).
fn start_agent(s: &Server, dir: &Path, name: &str, token: &str, ro: bool) -> Agent {
    start_agent_mounted(s, dir, name, token, "dest", ro)
}

/// Starts agent `name` in a mount namespace where `dir/mount` is `dir/name` (read-only if
/// `ro`): one path, a directory of its own per agent, all visible from here.
pub(crate) fn start_agent_mounted(
    s: &Server,
    dir: &Path,
    name: &str,
    token: &str,
    mount: &str,
    ro: bool,
) -> Agent {
    let own = dir.join(name);
    let shared = dir.join(mount);
    std::fs::create_dir_all(&own).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    let remount = if ro {
        format!(" && mount -o remount,bind,ro '{}'", shared.display())
    } else {
        String::new()
    };
    let script = format!(
        "mount --bind '{}' '{}'{remount} && exec \"$@\"",
        own.display(),
        shared.display()
    );
    let wrap = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ];
    Agent::start(s, name, &[], token, Some(&wrap)).unwrap()
}

fn start_fleet(s: &Server, dir: &Path, names: &[&str], ro: bool) -> Vec<Agent> {
    let token = s.join_token(names.len()).unwrap();
    let agents = names
        .iter()
        .map(|n| start_agent(s, dir, n, &token, ro))
        .collect();
    s.wait_online(names).unwrap();
    agents
}

fn dest_of(dir: &Path) -> String {
    format!("{}/", dir.join("dest").display())
}

fn check_copied(dir: &Path, agent: &str, name: &str, digest: &str) {
    let got: PathBuf = dir.join(agent).join(name);
    assert_eq!(
        sha256(&got),
        digest,
        "{agent}: content of {}",
        got.display()
    );
    let mode = std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "{agent}: mode of {}", got.display());
    assert!(
        !dir.join(agent).join(format!("{name}.herd-part")).exists(),
        "{agent}: the part file is gone"
    );
}

#[test]
fn cp_reaches_every_machine_with_checksum_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let names = ["cp-1", "cp-2", "cp-3"];
    let _agents = start_fleet(&s, dir.path(), &names, false);
    let src = dir.path().join("big.bin");
    let digest = make_file(&src, SIZE);

    let target = format!("cp-*:{}", dest_of(dir.path()));
    let out = s.run(&["cp", src.to_str().unwrap(), "-t", &target]);
    assert!(
        out.status.success(),
        "herd cp failed: {}\n{}",
        stderr(&out),
        s.log_tail()
    );
    for n in names {
        check_copied(dir.path(), n, "big.bin", &digest);
    }
    // Uploaded once, kept 0600 by its digest.
    let blob = s.data_dir.join("blobs").join(&digest);
    let mode = std::fs::metadata(&blob).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The run's audit entry says what was copied where.
    let audit = stdout(&s.run(&["audit"]));
    assert!(audit.contains("herd cp big.bin"), "audit: {audit}");
}

#[test]
fn cp_completes_across_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let mut agents = start_fleet(&s, dir.path(), &["mover"], false);
    let src = dir.path().join("big.bin");
    let digest = make_file(&src, SIZE);
    let part = dir.path().join("mover").join("big.bin.herd-part");

    let target = format!("mover:{}", dest_of(dir.path()));
    let cp = s
        .cli()
        .args(["cp", src.to_str().unwrap(), "-t", &target])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the agent as soon as the file is partly written.
    let mut seen = 0;
    for _ in 0..200_000 {
        seen = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    agents[0].kill();
    let seen = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(seen);
    assert!(
        seen > 0 && (seen as usize) < SIZE,
        "the copy was not caught half-way ({seen} bytes written)"
    );
    let again = start_agent(&s, dir.path(), "mover", "", false);
    let out = cp.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "herd cp failed: {}\nagent log:\n{}",
        stderr(&out),
        again.log()
    );
    check_copied(dir.path(), "mover", "big.bin", &digest);
    assert!(
        again.log().contains("resuming a copy"),
        "the restarted agent resumed the copy:\n{}",
        again.log()
    );
}

#[test]
fn cp_refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _agents = start_fleet(&s, dir.path(), &["ro-1"], true);
    let src = dir.path().join("small.bin");
    make_file(&src, 1 << 20);
    let target = format!("ro-1:{}", dest_of(dir.path()));

    // A destination the machine refuses.
    let out = s.run(&["cp", src.to_str().unwrap(), "-t", &target]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("herd: cannot write") && text.contains("read-only file system —"),
        "{text}"
    );

    // Content on the server that does not match its digest.
    let src2 = dir.path().join("other.bin");
    let digest = make_file(&src2, 1 << 20);
    let blobs = s.data_dir.join("blobs");
    let put = |digest: &str, file: &Path| {
        Command::new("curl")
            .args(["-sS", "-X", "PUT", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args(["-H", &format!("Authorization: Bearer {}", s.key)])
            .arg(format!("{}/api/v1/blobs/{digest}?offset=0", s.url))
            .output()
            .unwrap()
    };
    let wrong = "0".repeat(64);
    let answer = stdout(&put(&wrong, &src2));
    assert!(answer.contains("checksum mismatch"), "{answer}");
    assert!(!blobs.join(&wrong).exists() && !blobs.join(format!("{wrong}.part")).exists());

    // A blob damaged on the server after its upload: the machine refuses it.
    let uploaded = put(&digest, &src2);
    assert!(
        stdout(&uploaded).contains("\"complete\":true"),
        "the upload answered {:?} ({:?}); server log: {}",
        stdout(&uploaded),
        stderr(&uploaded),
        s.log_tail()
    );
    let mut damaged = std::fs::read(blobs.join(&digest)).unwrap();
    damaged[100] ^= 0xff;
    std::fs::write(blobs.join(&digest), damaged).unwrap();
    let out = s.run(&[
        "cp",
        src2.to_str().unwrap(),
        "-t",
        &format!("ro-1:{}", dir.path().join("ro-1").display()),
    ]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("checksum mismatch"), "{text}");
}
