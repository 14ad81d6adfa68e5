//! The file RPCs of the hub answer only for the agent's own transfers under way: a blob is
//! read only by an agent with a copy task of it, a fetched file is sent only for the agent's
//! own fetch task.

use herd_api::{CopyFile, FetchFile, RunSpec};
use herd_proto::v1 as pb;
use herd_proto::v1::agent_hub_server::AgentHub as _;
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use tokio::sync::mpsc;

use super::TestServer;
use crate::hub::HubService;
use crate::runs::NewRunRequest;

/// Joins and connects agent `name`; its credential.
async fn agent(srv: &TestServer, name: &str) -> (String, mpsc::Receiver<pb::ServerFrame>) {
    let (id, credential) = srv.join(name).await.unwrap();
    let (tx, frames) = mpsc::channel(64);
    let peer = crate::registry::Peer {
        instance: "",
        addr: "test",
    };
    let _ = srv
        .parts
        .hub
        .registry
        .connect(&id, tx, peer, Duration::ZERO);
    (credential, frames)
}

fn with_bearer<T>(credential: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    req
}

async fn run(srv: &TestServer, target: &str, command: &str, spec: RunSpec) -> String {
    let run = srv
        .parts
        .app
        .runs()
        .create(
            "key:test",
            NewRunRequest {
                command: command.into(),
                targets: vec![target.into()],
                spec,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    let tasks = srv.store.tasks_of_run(&run.id).await.unwrap();
    tasks[0].id.clone()
}

#[tokio::test]
async fn a_blob_is_read_only_by_an_agent_that_copies_it() {
    let srv = TestServer::new().await;
    let (m1, _f1) = agent(&srv, "m1").await;
    let (m2, _f2) = agent(&srv, "m2").await;
    let hub = HubService::new(srv.parts.hub.clone());
    let data = bytes::Bytes::from_static(b"the content of a copied file");
    let digest = hex::encode(Sha256::digest(&data));
    srv.parts
        .app
        .blobs()
        .upload(
            &digest,
            0,
            futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]),
        )
        .await
        .unwrap();
    let read = |credential: &str| {
        hub.read_blob(with_bearer(
            credential,
            pb::ReadBlobRequest {
                digest: digest.clone(),
                offset: 0,
            },
        ))
    };
    let Err(refused) = read(&m1).await else {
        panic!("an agent without a copy task read the blob");
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let spec = RunSpec {
        copy: vec![CopyFile {
            digest: digest.clone(),
            size: data.len() as u64,
            dest: "/tmp/".into(),
            name: "f".into(),
            mode: 0o644,
        }],
        ..RunSpec::default()
    };
    run(&srv, "m1", "herd cp f", spec).await;
    assert!(
        read(&m1).await.is_ok(),
        "the agent copying the blob may read it"
    );
    let Err(refused) = read(&m2).await else {
        panic!("another agent read the blob");
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_fetched_file_is_taken_only_for_the_agents_own_fetch_task() {
    let srv = TestServer::new().await;
    let (m1, _f1) = agent(&srv, "m1").await;
    let (m2, _f2) = agent(&srv, "m2").await;
    let hub = HubService::new(srv.parts.hub.clone());
    let announce = |credential: &str, task: &str| {
        hub.fetch_offset(with_bearer(
            credential,
            pb::FetchOffsetRequest {
                task_id: task.to_string(),
                digest: "0".repeat(64),
                size: 10,
                mode: 0o600,
            },
        ))
    };
    let command = run(&srv, "m1", "true", RunSpec::default()).await;
    let fetch = run(
        &srv,
        "m1",
        "herd fetch /etc/hostname",
        RunSpec {
            fetch: Some(FetchFile {
                path: "/etc/hostname".into(),
            }),
            ..RunSpec::default()
        },
    )
    .await;
    for (who, task) in [
        (&m1, &command),
        (&m2, &fetch),
        (&m1, &"no-such-task".to_string()),
    ] {
        let Err(refused) = announce(who, task).await else {
            panic!("a fetched file was taken for task {task}");
        };
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    }
    let held = announce(&m1, &fetch).await.unwrap().into_inner();
    assert_eq!((held.offset, held.complete), (0, false));
}
