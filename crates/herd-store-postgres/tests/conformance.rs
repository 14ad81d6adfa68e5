//! The conformance suite on a fresh PostgreSQL database per case, and the one-server lock.
#![allow(clippy::unwrap_used)]

use herd_store::conformance::Fresh;
use herd_store::{CredentialStore, Store, StoreError};
use herd_store_postgres::PgStore;
use herd_store_postgres::testdb::TestDatabase;

/// The PostgreSQL server of these tests: the one `HERD_TEST_POSTGRES` names, else a cluster
/// started from the machine's binaries for this test process.
fn server_url() -> String {
    herd_testkit::pg::Postgres::shared()
        .unwrap_or_else(|e| panic!("{e}"))
        .url()
        .to_string()
}

async fn fresh() -> Fresh {
    let db = TestDatabase::create(&server_url())
        .await
        .expect("create a test database");
    let store = PgStore::connect(&db.url).await.expect("connect");
    let raw = store.clone();
    Fresh::new(store, move |sql| {
        let raw = raw.clone();
        Box::pin(async move { raw.exec_raw(&sql).await })
    })
    .after(async move {
        let _ = db.drop().await;
    })
}

herd_store::conformance_suite!(fresh);

/// `url` with a password (its own if it has one), and the password.
fn with_password(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((_, pw)) => (url.to_string(), pw.to_string()),
            None => (format!("{scheme}://{user}:s3cret@{host}"), "s3cret".into()),
        },
        None => (format!("{scheme}://herd:s3cret@{rest}"), "s3cret".into()),
    }
}

#[tokio::test]
async fn one_active_server_per_database() {
    let db = TestDatabase::create(&server_url()).await.unwrap();
    // A password in the URL is never shown (trust authentication ignores one it does not
    // need).
    let (url, secret) = with_password(&db.url);
    let first = PgStore::connect(&url).await.unwrap();
    assert_eq!(first.backend(), "postgres");
    match PgStore::connect(&url).await {
        Err(StoreError::Locked(msg)) => {
            assert!(
                msg.starts_with("another herd server is using the database postgres://"),
                "{msg}"
            );
            assert!(
                msg.contains("stop it, or point this one at another database"),
                "{msg}"
            );
            assert!(!msg.contains(&secret), "{msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second server connected while the first holds the database"),
    }
    first.close().await;
    match first.count_api_keys().await {
        Err(StoreError::Closed(_)) => {}
        other => panic!("a closed store answered {other:?}"),
    }
    let second = PgStore::connect(&url).await.unwrap();
    assert_eq!(second.count_api_keys().await.unwrap(), 0);
    second.close().await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_is_not_there_is_named() {
    // Nothing listens on port 1.
    let Err(e) = PgStore::connect("postgres://herd:s3cret@127.0.0.1:1/herd").await else {
        panic!("connected to port 1");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("cannot connect to PostgreSQL at postgres://herd@127.0.0.1:1/herd: "),
        "{msg}"
    );
    assert!(msg.ends_with("— is it running? check --database"), "{msg}");
    assert!(!msg.contains("s3cret") && !msg.contains('\n'), "{msg}");
}

/// Migration 0002 on a database that already holds keys sharing a name: the oldest keeps
/// it, the others get `-2`, `-3` in order of creation, and the names are unique from then on.
#[tokio::test]
async fn unique_key_names_migrate_existing_duplicates() {
    use sqlx::Connection as _;
    let db = TestDatabase::create(&server_url()).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut first = sqlx::migrate!("./migrations/postgres");
    first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
    first.run(&mut conn).await.unwrap();
    for (id, name, at) in [
        ("k1", "ci", 1),
        ("k2", "ci", 2),
        ("k3", "ops", 3),
        ("k4", "ci", 4),
    ] {
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, role, created_at, created_by) VALUES ($1, $2, $1, 'admin', $3, 'test')",
        )
        .bind(id)
        .bind(name)
        .bind(at as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::migrate!("./migrations/postgres")
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
    let _ = conn.close().await;
    let _ = db.drop().await;
}
