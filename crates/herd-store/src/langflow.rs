//! LangFlow sources (a server's URL and its sealed API key) and the flows a sync found on
//! them. A flow no longer listed upstream is marked removed, not deleted, so what named it
//! can say so.

use async_trait::async_trait;

use crate::Result;
use crate::model::AuditEntry;

#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub name: String,
    pub url: String,
    /// The API key, sealed by the server (never in clear here).
    pub key_sealed: String,
    pub created_by: String,
    pub created_at: i64,
    /// The last sync that listed the source's flows.
    pub synced_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LangflowRow {
    pub source: String,
    /// LangFlow's id of the flow.
    pub id: String,
    pub name: String,
    pub description: String,
    pub endpoint_name: Option<String>,
    /// As LangFlow wrote it.
    pub updated_at: Option<String>,
    /// Its inputs, outputs, components and their parameters (JSON).
    pub summary: String,
    /// When a sync no longer found it upstream.
    pub removed_at: Option<i64>,
    pub synced_at: i64,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub unchanged: u64,
}

#[async_trait]
pub trait LangflowStore: Send + Sync {
    /// Stores a new source with `audit`; [`crate::StoreError::Conflict`] if the name is taken.
    async fn create_source(&self, row: &SourceRow, audit: &AuditEntry) -> Result<()>;
    async fn source(&self, name: &str) -> Result<Option<SourceRow>>;
    async fn sources(&self) -> Result<Vec<SourceRow>>;
    /// Deletes a source and its flows, with `audit`; false if there was none.
    async fn delete_source(&self, name: &str, audit: &AuditEntry) -> Result<bool>;
    /// Records what a listing of `source` found at `at`, with `audit`, in one transaction:
    /// the flows given are stored (added or updated), the source's other flows are marked
    /// removed, and the source's `synced_at` is set.
    async fn sync_flows(
        &self,
        source: &str,
        flows: &[LangflowRow],
        at: i64,
        audit: &AuditEntry,
    ) -> Result<SyncCounts>;
    /// Flows by source and name (of one source, or of all); removed ones included.
    async fn langflows(&self, source: Option<&str>) -> Result<Vec<LangflowRow>>;
}
