//! The running server against its own OpenAPI document, by a property-based API tester
//! (schemathesis, every check): thousands of generated requests, valid and invalid, each
//! answer checked against what the document declares (status, content type, schema, auth).
//!
//! Generated runs carry generated commands, so the agent here runs them as `nobody`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// The tester: `HERD_SCHEMATHESIS`, else `schemathesis` on the PATH.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("HERD_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v schemathesis"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.unwrap_or_else(|| {
        panic!(
            "schemathesis is not installed: scripts/test.sh installs it, or `pip install schemathesis` and set HERD_SCHEMATHESIS"
        )
    })
}

#[test]
fn the_api_keeps_its_document_under_generated_requests() {
    let tester = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let herd = unprivileged_copy(dir.path());
    let s = Server::start(&herd, dir.path()).unwrap();
    let state = dir.path().join("agents").join("m1");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
    let token = s.join_token(1).unwrap();
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let _a = Agent::start(&s, "m1", &["role=web"], &token, Some(&as_nobody)).unwrap();
    s.wait_online(&["m1"]).unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/schemathesis.toml");
    let out = Command::new(tester)
        .current_dir(dir.path())
        .args(["--config-file", config, "run"])
        .arg(format!("{}/api/v1/openapi.json", s.url))
        .args(["--checks", "all", "--max-examples", "40", "--seed", "1"])
        .args(["--request-timeout", "60"])
        .args(["--no-color", "--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {}", s.key)])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(
        out.status.success(),
        "the API does not keep its document:\n{text}\nserver log:\n{}",
        s.log()
    );
    assert!(text.contains("Tested:"), "{text}");
}

/// `nobody`'s uid and gid.
const NOBODY: u32 = 65534;

/// The binary under test, copied where `nobody` may run it (the build's directory may not be
/// open to it), in a directory `nobody` may enter.
fn unprivileged_copy(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    let bin = dir.join("herd");
    std::fs::copy(HERD, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}
