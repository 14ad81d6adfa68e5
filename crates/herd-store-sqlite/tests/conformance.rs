//! The conformance suite on a fresh SQLite database file per case, and opening and closing.

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
