//! The throwaway PostgreSQL: databases are fresh, distinct and reachable, and a cluster stops
//! (its files deleted) when the process that started it is killed.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use herd_testkit::{Postgres, alive, wait_until};

#[test]
fn databases_are_distinct_and_reachable() {
    let pg = Postgres::shared().unwrap();
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    assert_ne!(a, b);
    for url in [&a, &b] {
        let out = pg.psql(url).args(["-c", "select 1"]).output().unwrap();
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        let name = url.rsplit('/').next().unwrap();
        assert!(name.starts_with("herd_test_"), "{url}");
        assert_eq!(pg.run_sql(url, "select current_database()").unwrap(), name);
        // Fresh and empty: no table of its own.
        let tables = pg
            .run_sql(
                url,
                "select count(*) from information_schema.tables where table_schema = 'public'",
            )
            .unwrap();
        assert_eq!(tables, "0", "{url}");
    }
    // What is made in one is not seen in the other.
    pg.run_sql(&a, "create table only_in_a (x int)").unwrap();
    let err = pg.run_sql(&b, "select * from only_in_a").unwrap_err();
    assert!(err.to_string().contains("only_in_a"), "{err}");
}

/// Run as a child process by the test below: starts a cluster of its own, prints where it
/// is, and waits to be killed.
#[test]
#[ignore = "a helper process of cluster_stops_when_its_process_is_killed"]
fn cluster_owner_process() {
    if std::env::var_os("HERD_TESTKIT_PG_OWNER").is_none() {
        return;
    }
    let pg = Postgres::start().unwrap();
    let (dir, pid) = pg.cluster().unwrap();
    // On a line of its own: libtest may have printed "test … " before it.
    println!("\ncluster {pid} {}", dir.display());
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn cluster_stops_when_its_process_is_killed() {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster_owner_process",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env("HERD_TESTKIT_PG_OWNER", "1")
        .env_remove("HERD_TEST_POSTGRES")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("cluster ")))
        .expect("the owner process reports its cluster");
    let mut parts = line.split_whitespace().skip(1);
    let pid: u32 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    assert!(alive(pid), "postmaster {pid} runs");
    assert!(dir.join("data").is_dir(), "{}", dir.display());

    owner.kill().unwrap(); // SIGKILL: no destructor runs in the owner.
    owner.wait().unwrap();
    wait_until(Duration::from_secs(30), "the postmaster to stop", || {
        (!alive(pid)).then_some(())
    })
    .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the cluster dir to be deleted",
        || (!dir.exists()).then_some(()),
    )
    .unwrap();
}

#[test]
fn a_dropped_cluster_stops_and_leaves_nothing() {
    let pg = Postgres::start().unwrap();
    let (dir, pid) = pg.cluster().map(|(d, p)| (d.to_path_buf(), p)).unwrap();
    let db = pg.create_database().unwrap();
    assert_eq!(pg.run_sql(&db, "select 1").unwrap(), "1");
    drop(pg);
    // The drop waits for the watchdog, which waits for postgres and deletes the dir.
    assert!(!alive(pid), "postmaster {pid} still runs");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
