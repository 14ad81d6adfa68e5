//! The HTTP API under `/api/v1`, plus `/healthz` and `/metrics`. Every route is declared once,
//! with its OpenAPI operation (`#[utoipa::path]` on the handler: parameters, body, and every
//! status it can answer), and the router and the document are built together from those
//! declarations, so a route cannot exist without being documented. Every `/api/v1` call
//! except the document itself needs an API key.

mod agents;
mod alerts;
mod ask;
mod attach;
mod blobs;
mod breakers;
mod compress;
pub(crate) use compress::{accepts_gzip, gzip};
mod credentials;
mod extract;
mod flows;
mod langflow;
mod policy;
mod runs;
mod schedules;
mod tasks;
mod vars;

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use herd_api::{AuditEntry, ErrorBody, GcReport, ListQuery};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;
use extract::Query;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herd API",
        description = "Control plane for Linux fleets: run commands on one machine or ten thousand, with live output. Every call under /api/v1 needs `Authorization: Bearer <API key>` (on a WebSocket upgrade, where a browser cannot set headers, the key may instead be offered as the subprotocol `herd-key.<API key>` beside `herd`, which the server picks; or given as `?api_key=`, which puts it in the URL; on any other request `?api_key=` is refused with 401). Every other GET path is the web dashboard."
    ),
    modifiers(&Security),
    components(schemas(herd_api::OutputStream)),
    security(("bearer" = [])),
    tags(
        (name = "agents", description = "Machines of the fleet"),
        (name = "tokens", description = "Join tokens for new machines"),
        (name = "vars", description = "Variables and secrets (a secret's value is never answered)"),
        (name = "keys", description = "API keys"),
        (name = "runs", description = "Commands fanned out over machines"),
        (name = "tasks", description = "One machine's part of a run"),
        (name = "blobs", description = "Files of copy runs, uploaded once by SHA-256"),
        (name = "audit", description = "Who ran what where"),
        (name = "breakers", description = "Circuit breakers of the hosts herd calls"),
        (name = "alerts", description = "Fleet health alerts: thresholds on the metrics agents report"),
        (name = "server", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("api_key"))),
        );
    }
}

/// The router of every HTTP route, and the OpenAPI document that describes exactly them.
pub fn api(app: Arc<App>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let app_metrics_auth = app.metrics_auth();
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(agents::list))
        .routes(routes!(agents::summary))
        .routes(routes!(credentials::me))
        .routes(routes!(agents::get))
        .routes(routes!(agents::label))
        .routes(routes!(agents::revoke))
        .routes(routes!(agents::label_many))
        .routes(routes!(credentials::create_token, credentials::list_tokens))
        .routes(routes!(credentials::create_key, credentials::list_keys))
        .routes(routes!(credentials::revoke_token))
        .routes(routes!(credentials::revoke_key))
        .routes(routes!(runs::create, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::cancel))
        .routes(routes!(attach::attach_run))
        .routes(routes!(attach::start_run))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::input))
        .routes(routes!(tasks::output))
        .routes(routes!(tasks::fetched))
        .routes(routes!(attach::attach_task))
        .routes(routes!(blobs::get, blobs::put))
        .routes(routes!(audit))
        .routes(routes!(gc))
        .routes(routes!(breakers::list))
        .routes(routes!(vars::list))
        .routes(routes!(vars::get, vars::set, vars::delete))
        .routes(routes!(flows::list_jobs, flows::apply_job))
        .routes(routes!(flows::get_job, flows::delete_job))
        .routes(routes!(flows::start_job))
        .routes(routes!(flows::list_workflows, flows::apply_workflow))
        .routes(routes!(flows::get_workflow, flows::delete_workflow))
        .routes(routes!(flows::start_workflow))
        .routes(routes!(flows::list_runs))
        .routes(routes!(flows::get_run))
        .routes(routes!(flows::cancel_run))
        .routes(routes!(schedules::list, schedules::add))
        .routes(routes!(langflow::sources, langflow::add_source))
        .routes(routes!(ask::plan))
        .routes(routes!(ask::run))
        .routes(routes!(ask::show))
        .routes(routes!(ask::log))
        .routes(routes!(ask::approve))
        .routes(routes!(policy::check))
        .routes(routes!(policy::show, policy::set))
        .routes(routes!(policy::history))
        .routes(routes!(langflow::remove_source))
        .routes(routes!(langflow::sync))
        .routes(routes!(langflow::flows))
        .routes(routes!(langflow::flow))
        .routes(routes!(langflow::run))
        .routes(routes!(schedules::get, schedules::edit, schedules::remove))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::fires))
        .routes(routes!(schedules::next))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::rules, alerts::add_rule))
        .routes(routes!(alerts::remove_rule))
        .with_state(app.clone())
        .split_for_parts();
    let web_app = app;
    let mut doc = doc;
    if app_metrics_auth {
        // This server's `/metrics` takes the API key as the rest of the API does.
        if let Some(op) = doc
            .paths
            .paths
            .get_mut("/metrics")
            .and_then(|p| p.get.as_mut())
        {
            op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
        }
    }
    // The document describes itself too.
    doc.paths.paths.extend(
        OpenApiRouter::<()>::new()
            .routes(routes!(document))
            .into_openapi()
            .paths
            .paths,
    );
    let served = Arc::new(doc.clone());
    let router = router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let d = served.clone();
                async move { Json(d.as_ref().clone()) }
            }),
        )
        .fallback(move |req: axum::extract::Request| {
            let app = web_app.clone();
            async move {
                let path = req.uri().path();
                if path == "/api" || path.starts_with("/api/") || path == "/healthz" {
                    return ServerError::NotFound(
                        "no such API endpoint — see /api/v1/openapi.json".into(),
                    )
                    .into_response();
                }
                // Everything else is the dashboard's: read (from the binary or `--web-dir`)
                // and gzipped on the blocking pool.
                let (method, path, headers) = (
                    req.method().clone(),
                    path.to_string(),
                    req.headers().clone(),
                );
                match tokio::task::spawn_blocking(move || app.web().serve(&method, &path, &headers))
                    .await
                {
                    Ok(res) => res,
                    Err(e) => ServerError::Internal(format!("serving the dashboard failed: {e}"))
                        .into_response(),
                }
            }
        })
        .layer(axum::middleware::from_fn(compress::gzip_json));
    (router, doc)
}

/// A listing's filter from its query: `who` names an API key (`ci`) or an actor as stored
/// (`key:ci`, `agent:web-1`, `server`).
pub(crate) fn list_filter(q: ListQuery, state: Option<String>) -> herd_store::ListFilter {
    let limit = q.effective();
    let who = q.who.map(|w| {
        if w.contains(':') || w == "server" {
            w
        } else {
            format!("key:{w}")
        }
    });
    herd_store::ListFilter {
        limit,
        since: q.since,
        state,
        machine: q.machine,
        who,
        name: None,
    }
}

/// The router of every HTTP route.
pub fn router(app: Arc<App>) -> axum::Router {
    api(app).0
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
#[allow(dead_code)]
async fn document() {}

/// Liveness: answers `ok` while the server serves.
#[utoipa::path(get, path = "/healthz", tag = "server", security(()),
    responses((status = 200, description = "Serving", content_type = "text/plain", body = String)))]
async fn health() -> &'static str {
    "ok\n"
}

/// Prometheus metrics: agents connected, tasks by state, tasks ended, dispatch latency, output
/// bytes. Answered from memory (the count of tasks by state is at most a few seconds old).
/// Open, unless the server runs with `--metrics-auth`: then it needs an API key (the
/// document served by such a server says so).
#[utoipa::path(get, path = "/metrics", tag = "server", security(()),
    responses(
        (status = 200, description = "Text exposition format", content_type = "text/plain", body = String),
        (status = 401, description = "With --metrics-auth: no valid API key", body = ErrorBody),
        (status = 500, description = "With --metrics-auth: the server failed", body = ErrorBody),
        (status = 503, description = "With --metrics-auth: the server is shutting down", body = ErrorBody),
    ))]
async fn metrics(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    if app.metrics_auth() {
        let (mut parts, _) = req.into_parts();
        if let Err(e) = Actor::from_request_parts(&mut parts, &app).await {
            return e.into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().scrape(),
    )
        .into_response()
}

/// The audit log, newest first: who ran, cancelled, created, joined, labelled, revoked what.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(ListQuery),
    responses(
        (status = 200, description = "Entries", body = Vec<AuditEntry>),
        (status = 400, description = "A query that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
async fn audit(
    _: Actor,
    State(app): State<Arc<App>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AuditEntry>>> {
    let rows = app.audit_log(&list_filter(q, None)).await?;
    Ok(Json(rows.into_iter().map(convert::audit).collect()))
}

/// Prunes now what retention would prune in its next pass: finished runs older than
/// `--retention`, then the oldest finished runs while stored output is over
/// `--retention-size`, with their tasks and output. Unfinished runs and the audit log stay.
#[utoipa::path(post, path = "/api/v1/gc", tag = "server",
    responses(
        (status = 200, description = "What was freed", body = GcReport),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
async fn gc(actor: Actor, State(app): State<Arc<App>>) -> Result<Json<GcReport>> {
    Ok(Json(app.retention().gc(&actor.name).await?))
}
