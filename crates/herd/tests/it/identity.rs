//! Who is who: one server per data dir, and an agent's identity that cannot be copied or
//! renamed silently.

use std::process::Stdio;

use crate::harness::*;

/// A second server on a running server's data dir exits with one line naming the holder's
/// PID.
#[test]
fn second_server_on_a_data_dir_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on(
        HERD,
        dir.path(),
        "127.0.0.1:0",
        &[],
        herd_testkit::Database::DataDir,
    )
    .unwrap();
    let second = herd()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "another herd server (PID {}) is using the data dir",
            s.pid()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
