//! The HTTP API against its OpenAPI document: every route is in the document with the
//! statuses it must declare, and every status a route answers (to good, unauthenticated,
//! unknown and malformed requests) is one its operation declares.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use super::TestServer;

/// Every operation, with the statuses its document must declare at least.
const OPERATIONS: &[(&str, &str, &[u16])] = &[
    ("get", "/healthz", &[200]),
    ("get", "/metrics", &[200, 401]),
    ("get", "/api/v1/openapi.json", &[200]),
    ("get", "/api/v1/agents", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/fleet/summary", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/me", &[200, 401, 500, 503]),
    (
        "post",
        "/api/v1/labels",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "get",
        "/api/v1/agents/{agent}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/agents/{agent}/labels",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/agents/{agent}/revoke",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    ("get", "/api/v1/tokens", &[200, 401, 500, 503]),
    ("post", "/api/v1/tokens", &[200, 400, 401, 403, 500, 503]),
    ("get", "/api/v1/keys", &[200, 401, 500, 503]),
    ("post", "/api/v1/keys", &[200, 400, 401, 403, 409, 500, 503]),
    (
        "post",
        "/api/v1/keys/{key}/revoke",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    (
        "post",
        "/api/v1/tokens/{token}/revoke",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    ("get", "/api/v1/runs", &[200, 400, 401, 500, 503]),
    ("post", "/api/v1/runs", &[201, 400, 401, 403, 409, 500, 503]),
    ("get", "/api/v1/runs/{id}", &[200, 400, 401, 404, 500, 503]),
    (
        "post",
        "/api/v1/runs/{id}/cancel",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/runs/{id}/attach",
        &[101, 400, 401, 404, 500, 503],
    ),
    ("get", "/api/v1/runs/start", &[101, 400, 401, 403, 500, 503]),
    ("get", "/api/v1/tasks", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/tasks/{id}", &[200, 400, 401, 404, 500, 503]),
    (
        "post",
        "/api/v1/tasks/{id}/cancel",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/tasks/{id}/input",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    (
        "get",
        "/api/v1/tasks/{id}/output",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/tasks/{id}/fetched",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/tasks/{id}/attach",
        &[101, 400, 401, 404, 500, 503],
    ),
    ("get", "/api/v1/audit", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/alerts", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/alerts/rules", &[200, 401, 500, 503]),
    (
        "post",
        "/api/v1/alerts/rules",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "delete",
        "/api/v1/alerts/rules/{name}",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    ("get", "/api/v1/blobs/{digest}", &[200, 400, 401, 500, 503]),
    (
        "put",
        "/api/v1/blobs/{digest}",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    ("post", "/api/v1/gc", &[200, 401, 403, 500, 503]),
    ("get", "/api/v1/jobs", &[200, 401, 500, 503]),
    ("post", "/api/v1/jobs", &[200, 400, 401, 403, 409, 500, 503]),
    (
        "get",
        "/api/v1/jobs/{name}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "delete",
        "/api/v1/jobs/{name}",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/jobs/{name}/runs",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    ("get", "/api/v1/workflows", &[200, 401, 500, 503]),
    (
        "post",
        "/api/v1/workflows",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "get",
        "/api/v1/workflows/{name}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "delete",
        "/api/v1/workflows/{name}",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/workflows/{name}/runs",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    ("get", "/api/v1/workflow-runs", &[200, 400, 401, 500, 503]),
    (
        "get",
        "/api/v1/workflow-runs/{id}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/workflow-runs/{id}/cancel",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    ("get", "/api/v1/schedules", &[200, 401, 500, 503]),
    (
        "post",
        "/api/v1/ask/plan",
        &[200, 400, 401, 409, 500, 502, 503],
    ),
    (
        "post",
        "/api/v1/ask/runs",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "get",
        "/api/v1/ask/runs/{id}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/ask/runs/{id}/log",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/ask/runs/{id}/approve",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    ("post", "/api/v1/policy/check", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/policy", &[200, 400, 401, 404, 500, 503]),
    (
        "put",
        "/api/v1/policy",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    ("get", "/api/v1/policy/history", &[200, 401, 500, 503]),
    ("get", "/api/v1/langflow/sources", &[200, 401, 500, 503]),
    (
        "post",
        "/api/v1/langflow/sources",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "delete",
        "/api/v1/langflow/sources/{name}",
        &[200, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/langflow/sync",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/langflow/flows",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/langflow/flows/{name}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/langflow/flows/{name}/runs",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    (
        "post",
        "/api/v1/schedules",
        &[200, 400, 401, 403, 409, 500, 503],
    ),
    (
        "get",
        "/api/v1/schedules/{name}",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "put",
        "/api/v1/schedules/{name}",
        &[200, 400, 401, 403, 404, 409, 500, 503],
    ),
    (
        "delete",
        "/api/v1/schedules/{name}",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/schedules/{name}/pause",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/schedules/{name}/resume",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/schedules/{name}/fires",
        &[200, 400, 401, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/schedules/{name}/next",
        &[200, 400, 401, 404, 500, 503],
    ),
    ("get", "/api/v1/vars", &[200, 400, 401, 500, 503]),
    ("get", "/api/v1/breakers", &[200, 401, 500, 503]),
    ("get", "/api/v1/vars/{key}", &[200, 400, 401, 404, 500, 503]),
    ("put", "/api/v1/vars/{key}", &[200, 400, 401, 403, 500, 503]),
    (
        "delete",
        "/api/v1/vars/{key}",
        &[200, 400, 401, 403, 404, 500, 503],
    ),
];

/// (method, path) → declared statuses, from the document.
fn declared(doc: &serde_json::Value) -> BTreeMap<(String, String), BTreeSet<u16>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let statuses = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse::<u16>().unwrap())
                .collect();
            out.insert((method.clone(), path.clone()), statuses);
        }
    }
    out
}

#[tokio::test]
async fn every_route_and_status_is_in_the_document() {
    let srv = TestServer::new().await;
    let (_, doc) = crate::http::api(srv.parts.app.clone());
    let doc = serde_json::to_value(&doc).unwrap();
    let declared = declared(&doc);
    let want: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let have: BTreeSet<(String, String)> = declared.keys().cloned().collect();
    assert_eq!(have, want, "operations in the document");
    for (method, path, statuses) in OPERATIONS {
        let got = &declared[&(method.to_string(), path.to_string())];
        for s in *statuses {
            assert!(got.contains(s), "{method} {path} does not declare {s}");
        }
    }
    // Every schema a response or body names is in the document.
    let text = doc.to_string();
    for name in [
        "Agent",
        "Run",
        "RunWithTasks",
        "Task",
        "ErrorBody",
        "RunRequest",
        "Facts",
        "TaskState",
    ] {
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "schema {name} missing"
        );
        assert!(
            text.contains(&format!("#/components/schemas/{name}")),
            "{name} unused"
        );
    }
}

#[tokio::test]
async fn every_status_a_route_answers_is_declared() {
    let srv = TestServer::new().await;
    let key = srv.admin_key();
    let (router, doc) = crate::http::api(srv.parts.app.clone());
    let declared = declared(&serde_json::to_value(&doc).unwrap());
    let mut seen: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for (method, path, _) in OPERATIONS {
        let concrete = path
            .replace("{agent}", "no-such-machine")
            .replace("{id}", "no-such-id")
            .replace("{digest}", &"a".repeat(64));
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        // (authorization, query, body)
        let tries: Vec<(Option<&str>, &str, Option<&str>)> = vec![
            (None, "", Some("{}")),
            (Some(&key), "", Some("{}")),
            (Some("hk_00_wrong"), "", Some("{}")),
            (
                Some(&key),
                "?limit=abc&wait=maybe&stream=nope&from_end=7",
                Some("{}"),
            ),
            (Some(&key), "", Some("{not json")),
            (
                Some(&key),
                "",
                Some(r#"{"command":"true","targets":["("],"set":{"a b":"c"}}"#),
            ),
            (Some(&key), "", None),
        ];
        for (auth, query, body) in tries {
            let mut req = Request::builder()
                .method(m.clone())
                .uri(format!("{concrete}{query}"));
            if let Some(k) = auth {
                req = req.header("authorization", format!("Bearer {k}"));
            }
            let req = match body {
                Some(b) => req
                    .header("content-type", "application/json")
                    .body(Body::from(b.to_string())),
                None => req.body(Body::empty()),
            }
            .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            let status = res.status();
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {concrete}{query}"
            );
            if status.is_client_error() {
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    panic!("{method} {concrete}: a {status} without a JSON body: {bytes:?}")
                });
                assert!(v["error"].is_string(), "{method} {concrete}: {v}");
            }
            seen.entry((method.to_string(), path.to_string()))
                .or_default()
                .insert(status.as_u16());
        }
    }
    for (op, statuses) in &seen {
        let allowed = &declared[op];
        for s in statuses {
            assert!(
                allowed.contains(s),
                "{op:?} answered {s}, which it does not declare ({allowed:?})"
            );
        }
    }
    // An unknown path answers 404 with a JSON error.
    let res = router
        .oneshot(Request::get("/api/v1/nothing").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// The key as a query parameter only where a browser cannot set headers: a WebSocket
/// upgrade. Anywhere else it is refused (not ignored), even next to a good header.
#[tokio::test]
async fn an_api_key_in_the_query_only_on_websocket_upgrades() {
    let srv = TestServer::new().await;
    let key = srv.admin_key();
    let (router, doc) = crate::http::api(srv.parts.app.clone());
    let call = |method: &str, uri: String, auth: bool, upgrade: bool| {
        let mut req = Request::builder().method(method).uri(uri);
        if auth {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if upgrade {
            req = req
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(r#"{"command":"true","targets":["m1"]}"#))
            .unwrap();
        let router = router.clone();
        async move {
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).to_string())
        }
    };
    let refused = "?api_key= is only for WebSocket upgrades";
    for (method, uri, auth) in [
        ("POST", format!("/api/v1/runs?api_key={key}"), false),
        ("GET", format!("/api/v1/agents?api_key={key}"), false),
        ("GET", format!("/api/v1/agents?limit=5&api_key={key}"), true),
    ] {
        let (status, body) = call(method, uri.clone(), auth, false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
        assert!(body.contains(refused), "{method} {uri}: {body}");
    }
    assert!(srv.store.runs(10).await.unwrap().is_empty());
    // The header alone still works.
    let (status, _) = call("GET", "/api/v1/agents".into(), true, false).await;
    assert_eq!(status, StatusCode::OK);
    // On an upgrade the query's key is the key: a good one gets past authentication (to the
    // unknown run), a wrong one does not.
    let (status, body) = call(
        "GET",
        format!("/api/v1/runs/no-such-run/attach?api_key={key}"),
        false,
        true,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = call(
        "GET",
        "/api/v1/runs/no-such-run/attach?api_key=hk_00_wrong".into(),
        false,
        true,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The document says so: the query key is a way in on the WebSocket operations only.
    let doc = serde_json::to_value(&doc).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let by_query = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
            let ws = path.ends_with("/attach") || path == "/api/v1/runs/start";
            assert_eq!(by_query, ws, "{method} {path}: security {}", op["security"]);
        }
    }
}

/// A viewer key reads only: every operation that changes or runs something (and the
/// WebSocket that starts a run) declares the 403 it answers a viewer.
#[tokio::test]
async fn every_change_declares_the_viewers_403() {
    let srv = TestServer::new().await;
    let (_, doc) = crate::http::api(srv.parts.app.clone());
    let doc = serde_json::to_value(&doc).unwrap();
    for ((method, path), statuses) in declared(&doc) {
        let reads = method == "get" && path != "/api/v1/runs/start"
            || ["/api/v1/policy/check", "/api/v1/ask/plan"].contains(&path.as_str())
                && method != "get";
        if reads || !path.starts_with("/api/v1/") {
            continue;
        }
        assert!(
            statuses.contains(&403),
            "{method} {path} does not declare the viewer's 403"
        );
    }
}
