//! herd's calls to other systems, seen from outside: `herd breakers ls`.

use crate::harness::*;

#[test]
fn breakers_ls_lists_the_hosts_called() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    // A fresh server has called nobody.
    let json = s.json(&["breakers", "ls", "--json"]);
    assert_eq!(json, serde_json::json!([]));
    let out = s.run(&["breakers", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for col in ["HOST", "STATE", "FAILURES", "OPENED", "NEXT PROBE"] {
        assert!(table.contains(col), "{table}");
    }
}
