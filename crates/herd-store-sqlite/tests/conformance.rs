//! The conformance suite on a fresh SQLite database file per case, and opening and closing.
#![allow(clippy::unwrap_used)]

use herd_store::conformance::Fresh;
use herd_store_sqlite::SqliteStore;

async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("herd.db"))
        .await
        .expect("open the store");
    let raw = store.clone();
    Fresh::new(store, move |sql| {
        let raw = raw.clone();
        Box::pin(async move { raw.exec_raw(&sql).await })
    })
    .after(async move { drop(dir) })
}

herd_store::conformance_suite!(fresh);

#[tokio::test]
async fn a_file_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing").join("herd.db");
    let Err(e) = SqliteStore::open(&path).await else {
        panic!("opened a database in a directory that does not exist");
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "cannot open the SQLite database {}: ",
            path.display()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("— check that its directory exists and is writable"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_closed_store_says_so() {
    use herd_store::{CredentialStore, Store, StoreError};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("herd.db"))
        .await
        .expect("open the store");
    assert_eq!(store.backend(), "sqlite");
    store.close().await;
    match store.count_api_keys().await {
        Err(StoreError::Closed(_)) => {}
        other => panic!("a closed store answered {other:?}"),
    }
}

/// Migration 0002 on a database that already holds keys sharing a name: the oldest keeps
/// it, the others get `-2`, `-3` in order of creation, and the names are unique from then on.
#[tokio::test]
async fn unique_key_names_migrate_existing_duplicates() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("herd.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut first = sqlx::migrate!("./migrations/sqlite");
    first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
    first.run(&mut conn).await.unwrap();
    for (id, name, at) in [
        ("k1", "ci", 1),
        ("k2", "ci", 2),
        ("k3", "ops", 3),
        ("k4", "ci", 4),
    ] {
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, role, created_at, created_by) VALUES (?1, ?2, ?1, 'admin', ?3, 'test')",
        )
        .bind(id)
        .bind(name)
        .bind(at as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::migrate!("./migrations/sqlite")
        .run(&mut conn)
        .await
        .unwrap();
    let names: Vec<(String, String)> = sqlx::query_as("SELECT id, name FROM api_keys ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let want = [("k1", "ci"), ("k2", "ci-2"), ("k3", "ops"), ("k4", "ci-3")];
    assert_eq!(
        names,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    let dup = sqlx::query(
        "INSERT INTO api_keys (id, name, hash, role, created_at, created_by) VALUES ('k5', 'ops', 'h', 'admin', 5, 'test')",
    )
    .execute(&mut conn)
    .await;
    assert!(dup.is_err(), "a second key named ops was accepted");
}
