//! The conformance suite on a fresh SQLite database file per case.

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
