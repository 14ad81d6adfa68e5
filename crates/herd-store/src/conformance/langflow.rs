//! LangFlow sources and their synced flows.

use super::fixtures::*;
use crate::{LangflowRow, Result, SourceRow, Store, StoreError, SyncCounts};

fn source(name: &str) -> SourceRow {
    SourceRow {
        name: name.into(),
        url: "http://127.0.0.1:7860".into(),
        key_sealed: "sealed:key".into(),
        created_by: "key:test".into(),
        created_at: 5,
        synced_at: None,
    }
}

fn flow(source: &str, id: &str, name: &str) -> LangflowRow {
    LangflowRow {
        source: source.into(),
        id: id.into(),
        name: name.into(),
        description: format!("{name} flow"),
        endpoint_name: Some(format!("{name}-ep")),
        updated_at: Some("2026-12-01T00:00:00Z".into()),
        summary: r#"{"inputs":[],"outputs":[],"components":[]}"#.into(),
        removed_at: None,
        synced_at: 0,
    }
}

pub async fn langflow_sources_and_syncs(store: &dyn Store) -> Result<()> {
    store
        .create_source(&source("lab"), &entry("langflow.source.add", "lab"))
        .await?;
    store
        .create_source(&source("prod"), &entry("langflow.source.add", "prod"))
        .await?;
    let dup = store
        .create_source(&source("lab"), &entry("langflow.source.add", "lab"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let names: Vec<String> = store.sources().await?.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["lab", "prod"]);

    let first = [flow("lab", "f1", "echo"), flow("lab", "f2", "summarize")];
    let c = store
        .sync_flows("lab", &first, 100, &entry("langflow.sync", "lab"))
        .await?;
    assert_eq!(
        c,
        SyncCounts {
            added: 2,
            updated: 0,
            removed: 0,
            unchanged: 0
        }
    );
    assert_eq!(
        store.source("lab").await?.and_then(|s| s.synced_at),
        Some(100)
    );

    // f2 gone upstream, f1 changed, f3 new.
    let mut changed = flow("lab", "f1", "echo");
    changed.description = "echoes".into();
    let second = [changed, flow("lab", "f3", "translate")];
    let c = store
        .sync_flows("lab", &second, 200, &entry("langflow.sync", "lab"))
        .await?;
    assert_eq!(
        c,
        SyncCounts {
            added: 1,
            updated: 1,
            removed: 1,
            unchanged: 0
        }
    );
    let flows = store.langflows(Some("lab")).await?;
    let seen: Vec<(&str, Option<i64>)> = flows
        .iter()
        .map(|f| (f.id.as_str(), f.removed_at))
        .collect();
    assert_eq!(seen, [("f1", None), ("f2", Some(200)), ("f3", None)]);
    assert_eq!(flows[0].description, "echoes");

    // Back upstream: no longer removed. The same listing again changes nothing.
    let third = [
        flow("lab", "f1", "echo"),
        flow("lab", "f2", "summarize"),
        flow("lab", "f3", "translate"),
    ];
    store
        .sync_flows("lab", &third, 300, &entry("langflow.sync", "lab"))
        .await?;
    let c = store
        .sync_flows("lab", &third, 400, &entry("langflow.sync", "lab"))
        .await?;
    assert_eq!(
        c,
        SyncCounts {
            added: 0,
            updated: 0,
            removed: 0,
            unchanged: 3
        }
    );
    assert!(
        store
            .langflows(Some("lab"))
            .await?
            .iter()
            .all(|f| f.removed_at.is_none())
    );
    store
        .sync_flows(
            "prod",
            &[flow("prod", "p1", "echo")],
            500,
            &entry("langflow.sync", "prod"),
        )
        .await?;
    assert_eq!(store.langflows(None).await?.len(), 4);
    let missing = store
        .sync_flows("nope", &[], 1, &entry("langflow.sync", "nope"))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    assert!(
        store
            .delete_source("lab", &entry("langflow.source.rm", "lab"))
            .await?
    );
    assert!(
        !store
            .delete_source("lab", &entry("langflow.source.rm", "lab"))
            .await?
    );
    assert!(store.source("lab").await?.is_none());
    assert_eq!(store.langflows(None).await?.len(), 1);
    Ok(())
}
