//! The gRPC service agents dial, mounted by the HTTP router under its path prefix: `Join`
//! trades a join token for a credential; `Session` opens an agent's control stream;
//! `ReadBlob` serves the files of copy runs, `FetchOffset`/`WriteFetched` take in the files
//! of fetch runs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use herd_proto::v1::agent_hub_server::{AgentHub, AgentHubServer};
use herd_proto::v1::{
    AgentFrame, BlobChunk, FetchChunk, FetchOffsetRequest, FetchOffsetResponse, JoinRequest,
    JoinResponse, ReadBlobRequest, ServerFrame,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Hub, convert, session};
use crate::error::ServerError;
use crate::fetched::{FetchError, FetchedMeta};
use crate::fleet;
use crate::listen::PeerAddr;

/// Largest gRPC message either side may send on a `Session` or `WriteFetched` stream (whose
/// handlers check the agent's credential before they read a message).
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// Largest message of the calls whose message is read before the handler runs (`Join`,
/// `ReadBlob`, `FetchOffset`): the decoder refuses a larger declared length before it makes
/// room for it, so an unauthenticated caller cannot make the server hold more than this per
/// request.
const MAX_SMALL_MESSAGE: usize = 64 * 1024;
/// How long a call's request message has to arrive before the call is refused (a caller that
/// stalls half-way through its message holds no more than this long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued to one agent before senders wait.
const SEND_QUEUE: usize = 1024;
/// The service's path prefix.
const PREFIX: &str = "/herd.agent.v1.AgentHub";

/// Mounts the service on `router`: the calls with small messages on a service instance of
/// their own (decoder limit [`MAX_SMALL_MESSAGE`], request timeout), the streams on another.
pub fn mount<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    hub: Arc<Hub>,
) -> axum::Router<S> {
    let streams = AgentHubServer::new(HubService { hub: hub.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let small = AgentHubServer::new(HubService { hub })
        .max_decoding_message_size(MAX_SMALL_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let small = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        let call = tower::ServiceExt::oneshot(small.clone(), req);
        async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
                Ok(res) => res,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the request did not arrive within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ))
                .into_http()),
            }
        }
    });
    let mut router = router;
    for call in ["Join", "ReadBlob", "FetchOffset"] {
        router = router.route_service(&format!("{PREFIX}/{call}"), small.clone());
    }
    router.route_service(&format!("{PREFIX}/{{*method}}"), streams)
}

pub struct HubService {
    hub: Arc<Hub>,
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<ServerFrame, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

/// Bytes of a blob per message to an agent.
const BLOB_CHUNK: usize = 1 << 20;

/// The bearer credential of a request's metadata.
fn bearer<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

fn fetch_status(e: FetchError) -> Status {
    match e {
        FetchError::Refused(m) => Status::out_of_range(m),
        FetchError::Mismatch(m) => Status::invalid_argument(m),
        FetchError::Busy => Status::unavailable(FetchError::Busy.to_string()),
        FetchError::Io(m) => Status::internal(m),
    }
}

impl HubService {
    #[cfg(test)]
    pub(crate) fn new(hub: Arc<Hub>) -> HubService {
        HubService { hub }
    }

    /// The agent may read blob `digest`: one of its tasks not over yet copies it.
    async fn copies_blob(&self, agent_id: &str, digest: &str) -> Result<(), Status> {
        let tasks = self
            .hub
            .store
            .open_tasks_of_agents(&[agent_id.to_string()])
            .await
            .map_err(|e| status(e.into()))?;
        let mut runs: Vec<&str> = tasks.iter().map(|t| t.run_id.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        for run_id in runs {
            let run = self
                .hub
                .store
                .run(run_id)
                .await
                .map_err(|e| status(e.into()))?;
            if run.is_some_and(|r| r.spec.copy.iter().any(|f| f.digest == digest)) {
                return Ok(());
            }
        }
        Err(Status::permission_denied(format!(
            "blob {digest} is not copied by any task of this agent that is under way"
        )))
    }

    /// The agent of `token` may send the file of `task_id`: its own fetch task, not over.
    async fn fetch_task(&self, token: &str, task_id: &str) -> Result<(), Status> {
        let agent = self
            .hub
            .fleet
            .authenticate_agent(token)
            .await
            .map_err(status)?;
        let refused = || {
            Status::failed_precondition(format!(
                "task {task_id} is not a fetch task of this agent that is still under way"
            ))
        };
        let task = self
            .hub
            .store
            .task(task_id)
            .await
            .map_err(|e| status(e.into()))?
            .ok_or_else(refused)?;
        if task.agent_id != agent.id || task.state.is_terminal() {
            return Err(refused());
        }
        let run = self
            .hub
            .store
            .run(&task.run_id)
            .await
            .map_err(|e| status(e.into()))?
            .ok_or_else(refused)?;
        if run.spec.fetch.is_none() {
            return Err(refused());
        }
        Ok(())
    }
}

fn status(e: ServerError) -> Status {
    match e {
        ServerError::Unauthorized(m) => Status::unauthenticated(m),
        ServerError::Forbidden(m) => Status::permission_denied(m),
        ServerError::BadRequest(m) => Status::invalid_argument(m),
        ServerError::Conflict(m) => Status::already_exists(m),
        ServerError::NotFound(m) => Status::not_found(m),
        e => {
            tracing::error!(error = %herd_core::Escaped(&e.to_string()), "hub request failed");
            Status::internal(format!("server error: {e}"))
        }
    }
}

#[tonic::async_trait]
impl AgentHub for HubService {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let source = req.extensions().get::<PeerAddr>().map(|p| p.0);
        if let Some(src) = source
            && let Err(wait) = self.hub.join_limit.check(src.ip())
        {
            return Err(Status::resource_exhausted(format!(
                "too many failed joins from {} — wait {}s, and check the join token (`herd token create` makes a new one)",
                src.ip(),
                wait.as_secs().max(1)
            )));
        }
        let req = req.into_inner();
        let name = req.name.clone();
        let joined = self
            .hub
            .fleet
            .join(fleet::JoinRequest {
                token: req.token,
                name: req.name,
                labels: convert::labels(&req.labels).0,
                facts: req.facts.as_ref().map(convert::facts).unwrap_or_default(),
            })
            .await;
        let (agent_id, credential) = match joined {
            Ok(j) => j,
            Err(ServerError::Unauthorized(why)) => {
                // A bad, expired or used-up token: counted against its source and on record.
                let from =
                    source.map_or_else(|| "an unknown address".to_string(), |s| s.to_string());
                if let Some(src) = source {
                    self.hub.join_limit.failed(src.ip());
                }
                let entry = herd_store::AuditEntry::new(
                    format!("join:{from}"),
                    "agent.join_refused",
                    format!("agent:{name}"),
                    serde_json::json!({"from": from, "name": name, "why": why}),
                );
                if let Err(e) = self.hub.store.append_audit(&entry).await {
                    tracing::warn!(error = %e, "cannot record a refused join in the audit log");
                }
                return Err(Status::unauthenticated(why));
            }
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(JoinResponse {
            agent_id,
            credential,
        }))
    }

    type SessionStream = FrameStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let token = bearer(&req);
        let agent = self
            .hub
            .fleet
            .authenticate_agent(&token)
            .await
            .map_err(status)?;
        crate::listen::authenticated(req.extensions().get());
        let addr = req
            .extensions()
            .get::<PeerAddr>()
            .map(|p| p.0.to_string())
            .unwrap_or_else(|| "an unknown address".into());
        let mut inbound = req.into_inner();
        // The hello comes with the request: who is connecting is settled before the
        // stream is answered, so a refused agent gets a status, not a stream.
        let hello = session::hello(&self.hub, &agent, &mut inbound).await?;
        let (tx, rx) = mpsc::channel::<ServerFrame>(SEND_QUEUE);
        let reg = session::register(&self.hub, &agent, &hello, &addr, tx.clone()).await?;
        self.hub.tracker.spawn(session::run(
            self.hub.clone(),
            agent,
            hello,
            reg,
            tx,
            inbound,
        ));
        let out = ReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }

    type ReadBlobStream = ChunkStream;

    async fn read_blob(
        &self,
        req: Request<ReadBlobRequest>,
    ) -> Result<Response<Self::ReadBlobStream>, Status> {
        use std::os::unix::fs::FileExt as _;
        let token = bearer(&req);
        let agent = self
            .hub
            .fleet
            .authenticate_agent(&token)
            .await
            .map_err(status)?;
        crate::listen::authenticated(req.extensions().get());
        let req = req.into_inner();
        self.copies_blob(&agent.id, &req.digest).await?;
        let path = self
            .hub
            .blobs
            .complete(&req.digest)
            .await
            .map_err(|e| Status::not_found(e.to_string()))?;
        let file = tokio::task::spawn_blocking(move || std::fs::File::open(&path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::not_found(format!("cannot open blob {}: {e}", req.digest)))?;
        let file = Arc::new(file);
        let (tx, rx) = mpsc::channel::<Result<BlobChunk, Status>>(4);
        let shutdown = self.hub.shutdown.clone();
        self.hub.tracker.spawn(async move {
            let mut offset = req.offset;
            loop {
                // One blocking read per chunk, straight into the buffer that is sent.
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; BLOB_CHUNK];
                    let mut n = 0;
                    while n < BLOB_CHUNK {
                        match f.read_at(&mut buf[n..], offset + n as u64) {
                            Ok(0) => break,
                            Ok(k) => n += k,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    buf.truncate(n);
                    Ok(buf)
                })
                .await;
                let item = match read {
                    Ok(Ok(buf)) if buf.is_empty() => return,
                    Ok(Ok(buf)) => {
                        offset += buf.len() as u64;
                        Ok(BlobChunk {
                            data: bytes::Bytes::from(buf),
                        })
                    }
                    Ok(Err(e)) => Err(Status::internal(format!("cannot read the blob: {e}"))),
                    Err(e) => Err(Status::internal(format!("cannot read the blob: {e}"))),
                };
                let failed = item.is_err();
                tokio::select! {
                    r = tx.send(item) => if r.is_err() || failed { return },
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_offset(
        &self,
        req: Request<FetchOffsetRequest>,
    ) -> Result<Response<FetchOffsetResponse>, Status> {
        let token = bearer(&req);
        let req = req.into_inner();
        self.fetch_task(&token, &req.task_id).await?;
        let held = self
            .hub
            .fetched
            .begin(
                &req.task_id,
                FetchedMeta {
                    digest: req.digest,
                    size: req.size,
                    mode: req.mode & 0o7777,
                },
            )
            .await
            .map_err(fetch_status)?;
        Ok(Response::new(FetchOffsetResponse {
            offset: held.bytes,
            complete: held.complete,
        }))
    }

    async fn write_fetched(
        &self,
        req: Request<Streaming<FetchChunk>>,
    ) -> Result<Response<FetchOffsetResponse>, Status> {
        let token = bearer(&req);
        // The credential is checked before any message is read: the messages of this stream
        // may be large, and nothing large is taken in for a caller that is not an agent.
        self.hub
            .fleet
            .authenticate_agent(&token)
            .await
            .map_err(status)?;
        crate::listen::authenticated(req.extensions().get());
        let mut inbound = req.into_inner();
        let Some(first) = inbound.message().await? else {
            return Err(Status::invalid_argument("an empty upload"));
        };
        self.fetch_task(&token, &first.task_id).await?;
        let (task_id, offset) = (first.task_id.clone(), first.offset);
        let rest = inbound.map(|c| c.map(|c| c.data).map_err(|s| s.message().to_string()));
        let body = futures::stream::iter([Ok(first.data)]).chain(rest);
        let held = self
            .hub
            .fetched
            .append(&task_id, offset, Box::pin(body))
            .await
            .map_err(fetch_status)?;
        Ok(Response::new(FetchOffsetResponse {
            offset: held.bytes,
            complete: held.complete,
        }))
    }
}
