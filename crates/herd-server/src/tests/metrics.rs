//! `/metrics` in process: a scrape is answered from memory, never from the store.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::TestServer;
use crate::runs::NewRunRequest;

/// The sum of the `herd_tasks{state=…}` samples of a scrape.
fn tasks_counted(text: &str) -> i64 {
    text.lines()
        .filter(|l| l.starts_with("herd_tasks{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

async fn scrape(srv: &TestServer) -> String {
    let res = crate::http::router(srv.parts.app.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn scrapes_are_answered_from_memory_with_the_store_gone() {
    let srv = TestServer::new().await;
    srv.join("m1").await.unwrap();
    for _ in 0..3 {
        srv.parts
            .app
            .runs()
            .create(
                "key:test",
                NewRunRequest {
                    command: "true".into(),
                    targets: vec!["m1".into()],
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
    }
    // The count a scrape serves, taken as the background counter takes it.
    srv.parts
        .app
        .metrics()
        .count_tasks(srv.store.as_ref())
        .await;
    assert_eq!(tasks_counted(&scrape(&srv).await), 3);

    // Without its store, the server still answers every scrape with the last count: no
    // scrape reads the store.
    srv.store.close().await;
    for _ in 0..50 {
        let text = scrape(&srv).await;
        assert_eq!(tasks_counted(&text), 3, "{text}");
        assert!(
            text.contains("herd_tasks_counted_timestamp_seconds "),
            "{text}"
        );
        assert!(
            text.contains("herd_tasks_ended_total{state=\"succeeded\"} 0"),
            "{text}"
        );
    }
}
