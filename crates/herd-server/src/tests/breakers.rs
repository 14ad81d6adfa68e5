//! The server's `Actions` and `GET /api/v1/breakers`: a host that keeps failing is shown open,
//! with when it opened and when its probe may go.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::TestServer;

#[tokio::test]
async fn a_failing_host_is_listed_open() {
    let srv = TestServer::new().await;
    let key = srv.admin_key();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failing = axum::Router::new().fallback(|| async { StatusCode::BAD_GATEWAY });
    tokio::spawn(async move { axum::serve(listener, failing).await });

    let actions = srv.parts.app.actions().clone();
    let call = herd_core::actions::HttpCall::get(format!("http://{addr}/hook"));
    for _ in 0..5 {
        assert_eq!(actions.http(&call).await.status, Some(502));
    }
    let refused = actions.http(&call).await;
    assert_eq!(refused.attempts, 0);
    assert!(refused.error.unwrap().contains("circuit open"));

    let router = crate::http::router(srv.parts.app.clone());
    let res = router
        .oneshot(
            Request::get("/api/v1/breakers")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let b = &list[0];
    assert_eq!(b["host"], addr.to_string());
    assert_eq!(b["state"], "open");
    assert_eq!(b["consecutive_failures"], 5);
    let opened = b["opened_at_ms"].as_i64().unwrap();
    assert_eq!(b["next_probe_ms"].as_i64().unwrap(), opened + 30_000);

    // The metrics say the same.
    let m = srv.parts.app.metrics().scrape();
    for line in [
        "herd_breakers{state=\"open\"} 1",
        "herd_breakers{state=\"closed\"} 0",
        "herd_calls_total{result=\"failed\"} 6",
        "herd_calls_total{result=\"succeeded\"} 0",
        "herd_call_attempts_total 5",
        "herd_calls_refused_total 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in:\n{m}");
    }
}
