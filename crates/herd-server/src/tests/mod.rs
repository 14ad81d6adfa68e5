//! In-process tests of the assembled server on a real SQLite store: the HTTP contract
//! against the OpenAPI document, and the persist path from a batch to acks and rows.

mod breakers;
mod contract;
pub(crate) mod events;
mod ingest;
mod metrics;
mod names;
mod policy;
mod schedules;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use crate::app::{Parts, Settings, assemble};

/// A server's parts on a fresh SQLite store in a temp dir (no listener).
pub(crate) struct TestServer {
    pub parts: Parts,
    pub store: Arc<dyn herd_store::Store>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn new() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn herd_store::Store> = Arc::new(
            herd_store_sqlite::SqliteStore::open(&dir.path().join("herd.db"))
                .await
                .unwrap(),
        );
        let parts = assemble(Settings {
            store: store.clone(),
            output_dir: dir.path().join("output"),
            blob_dir: dir.path().join("blobs"),
            fetched_dir: dir.path().join("fetched"),
            secrets_key: dir.path().join("secrets.key"),
            output_cap: 1 << 20,
            lost_after: Duration::from_secs(600),
            max_token_ttl: Duration::from_secs(7 * 24 * 3600),
            retention: crate::retention::RetentionPolicy {
                max_age: Duration::from_secs(30 * 24 * 3600),
                max_bytes: None,
                interval: Duration::from_secs(3600),
            },
            url: "http://127.0.0.1:1".into(),
            ca_fingerprint: None,
            metrics_auth: false,
            local_agent: None,
            actions: Default::default(),
            llm: Err("no model in tests".into()),
            supervise: Default::default(),
            web_dir: None,
        })
        .await
        .unwrap();
        TestServer {
            parts,
            store,
            _dir: dir,
        }
    }

    /// Joins a machine named `name` with a fresh one-use token: `(agent id, credential)`.
    pub async fn join(&self, name: &str) -> crate::error::Result<(String, String)> {
        let fleet = self.parts.app.fleet();
        let (token, _) = fleet
            .create_join_token("test", Duration::from_secs(60), 1, None)
            .await?;
        fleet
            .join(crate::fleet::JoinRequest {
                token,
                name: name.into(),
                labels: herd_core::Labels::new(),
                facts: Default::default(),
            })
            .await
    }

    pub fn admin_key(&self) -> String {
        self.parts.admin_key.clone().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.parts.shutdown.cancel();
    }
}
