//! herd-actions against real servers started here: an HTTP server (axum on 127.0.0.1:0) that
//! fails a given number of times then recovers, answers 429 with `Retry-After`, or records
//! webhook bodies, and a real SMTP server (Python's aiosmtpd, `herd_testkit::SmtpServer`) that
//! writes what it receives to a maildir. Every assertion on what reached a server is made on
//! the server's side.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use herd_actions::{Actions, ActionsConfig, BreakerPhase};
use herd_core::actions::{Chat, Email, Expect, HttpCall, Notify, Rate, Retry, Smtp};
use herd_testkit::SmtpServer;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    at: Instant,
    content_type: String,
    body: String,
}

#[derive(Default)]
struct Backend {
    seen: Mutex<Vec<Seen>>,
    /// `/flaky` answers 500 this many more times.
    failures_left: AtomicU32,
}

impl Backend {
    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn handle(
    State(b): State<Arc<Backend>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let first = b.count(&path) == 0;
    b.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        at: Instant::now(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let json = [("content-type", "application/json")];
    match path.as_str() {
        "/flaky" => {
            let left = b.failures_left.load(Ordering::SeqCst);
            if left > 0 {
                b.failures_left.store(left - 1, Ordering::SeqCst);
                return (StatusCode::INTERNAL_SERVER_ERROR, "down for now").into_response();
            }
            (
                json,
                r#"{"items": [{"id": "abc", "n": 1}, {"id": "def", "n": 2}], "ok": true}"#,
            )
                .into_response()
        }
        "/limited" if first => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "/limited" => (json, r#"{"ok": true}"#).into_response(),
        "/teapot" => (StatusCode::IM_A_TEAPOT, "short and stout").into_response(),
        "/big" => (json, "x".repeat(3000)).into_response(),
        "/text" => "not json".into_response(),
        _ => (json, r#"{"received": true}"#).into_response(),
    }
}

async fn backend() -> (String, Arc<Backend>) {
    let state = Arc::new(Backend::default());
    let app = Router::new()
        .fallback(any(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

fn actions(threshold: u32, cooldown: Duration) -> Actions {
    Actions::new(ActionsConfig {
        breaker_threshold: threshold,
        breaker_cooldown: cooldown,
        ..ActionsConfig::default()
    })
}

fn quick_retries(count: u32) -> Option<Retry> {
    Some(Retry {
        count,
        backoff_ms: 10,
        max_backoff_ms: 50,
    })
}

#[tokio::test]
async fn retries_until_the_server_recovers_then_extracts() {
    let (base, server) = backend().await;
    server.failures_left.store(2, Ordering::SeqCst);
    let a = actions(10, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/flaky"));
    call.retries = quick_retries(3);
    call.extract = BTreeMap::from([
        ("first".to_string(), "$.items[0].id".to_string()),
        ("all".to_string(), "$.items[*].n".to_string()),
        ("flag".to_string(), "$.ok".to_string()),
        ("none".to_string(), "$.missing".to_string()),
    ]);
    let r = a.http(&call).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.attempts, 3);
    assert_eq!(server.count("/flaky"), 3);
    assert_eq!(r.status, Some(200));
    assert_eq!(r.outputs["status"], "200");
    assert_eq!(r.outputs["first"], "abc");
    assert_eq!(r.outputs["all"], "[1,2]");
    assert_eq!(r.outputs["flag"], "true");
    assert_eq!(r.outputs["none"], "");
    assert!(
        r.output.starts_with("attempt 1: 500 Internal Server Error"),
        "{}",
        r.output
    );
    assert!(r.output.contains("attempt 2: 500"), "{}", r.output);
    assert!(r.output.contains("HTTP/1.1 200 OK\n"), "{}", r.output);
    assert!(r.output.contains("content-type: application/json\n"));
    assert!(r.output.contains(r#""id": "abc""#));
    // The host answered in the end: its breaker is closed with no failures counted.
    let b = a.breakers();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].phase, BreakerPhase::Closed);
    assert_eq!(b[0].consecutive_failures, 0);
}

#[tokio::test]
async fn retries_run_out() {
    let (base, server) = backend().await;
    server.failures_left.store(100, Ordering::SeqCst);
    let a = actions(10, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/flaky"));
    call.retries = quick_retries(2);
    let r = a.http(&call).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 3);
    assert_eq!(server.count("/flaky"), 3);
    assert_eq!(r.status, Some(500));
    let err = r.error.unwrap();
    assert!(
        err.contains("500 Internal Server Error (expected 2xx) after 3 attempts"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert!(r.output.contains("down for now"), "{}", r.output);
}

#[tokio::test]
async fn the_breaker_opens_stops_calls_and_probes_after_the_cooldown() {
    let (base, server) = backend().await;
    server.failures_left.store(100, Ordering::SeqCst);
    let cooldown = Duration::from_millis(500);
    let a = actions(3, cooldown);
    // A call with retries: its attempts stop at the third failure, when the breaker opens.
    let mut call = HttpCall::get(format!("{base}/flaky"));
    call.retries = quick_retries(10);
    let r = a.http(&call).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 3);
    assert_eq!(server.count("/flaky"), 3);
    let err = r.error.unwrap();
    let host = base.trim_start_matches("http://");
    assert!(
        err.contains(&format!("circuit open for {host} since ")) && err.contains("next probe at"),
        "{err}"
    );
    let b = &a.breakers()[0];
    assert_eq!(b.host, host);
    assert_eq!(b.phase, BreakerPhase::Open);
    assert_eq!(b.consecutive_failures, 3);
    let opened = b.opened_at_ms.unwrap();
    assert_eq!(b.next_probe_ms.unwrap(), opened + 500);

    // While open, calls fail at once and never reach the server.
    call.retries = None;
    for _ in 0..5 {
        let r = a.http(&call).await;
        assert_eq!(r.attempts, 0);
        assert!(r.error.unwrap().contains("circuit open"));
    }
    assert_eq!(server.count("/flaky"), 3);

    // After the cooldown one probe goes; it fails, and the breaker opens again.
    tokio::time::sleep(cooldown).await;
    let r = a.http(&call).await;
    assert_eq!(r.attempts, 1);
    assert_eq!(server.count("/flaky"), 4);
    let r = a.http(&call).await;
    assert_eq!(r.attempts, 0, "{r:?}");
    assert_eq!(server.count("/flaky"), 4);
    let b = &a.breakers()[0];
    assert_eq!(b.phase, BreakerPhase::Open);
    assert!(b.opened_at_ms.unwrap() >= opened + 500);

    // The server recovers; after the next cooldown the probe succeeds and closes it.
    server.failures_left.store(0, Ordering::SeqCst);
    tokio::time::sleep(cooldown).await;
    let r = a.http(&call).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(server.count("/flaky"), 5);
    let b = &a.breakers()[0];
    assert_eq!(b.phase, BreakerPhase::Closed);
    assert_eq!(b.consecutive_failures, 0);
    assert_eq!(b.opened_at_ms, None);
    assert!(a.http(&call).await.ok);
    assert_eq!(server.count("/flaky"), 6);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (base, server) = backend().await;
    let a = actions(10, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/limited"));
    call.retries = Some(Retry {
        count: 3,
        backoff_ms: 10,
        max_backoff_ms: 5000,
    });
    let r = a.http(&call).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.attempts, 2);
    assert!(
        r.output
            .starts_with("attempt 1: 429 Too Many Requests (expected 2xx) — retrying in 1s"),
        "{}",
        r.output
    );
    let seen = server.seen("/limited");
    assert_eq!(seen.len(), 2);
    // The retry came no earlier than the server asked, by the server's own clock.
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_not_cut_short() {
    let (base, server) = backend().await;
    let a = actions(10, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/limited"));
    call.retries = Some(Retry {
        count: 3,
        backoff_ms: 10,
        max_backoff_ms: 500,
    });
    let r = a.http(&call).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 1);
    assert_eq!(server.count("/limited"), 1);
    let err = r.error.unwrap();
    assert!(
        err.contains("the server asked to retry after 1s (Retry-After), beyond max_backoff_ms 500"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unexpected_status_fails_the_call_but_not_the_breaker() {
    let (base, server) = backend().await;
    let a = actions(1, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/teapot"));
    call.retries = quick_retries(3);
    let r = a.http(&call).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 1, "a 4xx is not retried");
    assert_eq!(r.status, Some(418));
    assert_eq!(
        r.error.as_deref(),
        Some(&*format!(
            "GET {base}/teapot: 418 I'm a teapot (expected 2xx)"
        ))
    );
    assert!(r.output.contains("short and stout"));
    assert_eq!(a.breakers()[0].phase, BreakerPhase::Closed);
    // Expected, it is a success; and a 4xx left the breaker closed (threshold 1).
    call.expect = Expect::Statuses(vec![418, 404]);
    let r = a.http(&call).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(server.count("/teapot"), 2);
}

#[tokio::test]
async fn bodies_are_sent_and_responses_capped() {
    let (base, server) = backend().await;
    let a = Actions::new(ActionsConfig {
        max_body: 1000,
        ..ActionsConfig::default()
    });
    let mut call = HttpCall::get(format!("{base}/echo"));
    call.method = "post".to_string();
    call.body = Some(serde_json::json!({"a": [1, 2]}));
    assert!(a.http(&call).await.ok);
    call.body = Some(serde_json::json!("plain words"));
    call.headers = BTreeMap::from([("Content-Type".to_string(), "text/plain".to_string())]);
    assert!(a.http(&call).await.ok);
    let seen = server.seen("/echo");
    assert_eq!(seen[0].body, r#"{"a":[1,2]}"#);
    assert_eq!(seen[0].content_type, "application/json");
    assert_eq!(seen[1].body, "plain words");
    assert_eq!(seen[1].content_type, "text/plain");

    let mut big = HttpCall::get(format!("{base}/big"));
    let r = a.http(&big).await;
    assert!(r.ok);
    assert!(
        r.output.ends_with(&format!(
            "{}\n[body truncated after 1000 bytes]\n",
            "x".repeat(1000)
        )),
        "{}",
        r.output
    );
    big.extract = BTreeMap::from([("x".to_string(), "$.x".to_string())]);
    let r = a.http(&big).await;
    assert!(!r.ok);
    assert!(
        r.error
            .unwrap()
            .contains("cannot extract x: the response body is over 1000 bytes")
    );
    let mut text = HttpCall::get(format!("{base}/text"));
    text.extract = BTreeMap::from([("x".to_string(), "$.x".to_string())]);
    let r = a.http(&text).await;
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("the response body is not JSON"));
}

#[tokio::test]
async fn the_rate_limit_refuses_a_wait_beyond_the_timeout() {
    let (base, server) = backend().await;
    let a = actions(10, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{base}/echo"));
    call.rate = Some(Rate {
        per_second: 0.5,
        burst: 1,
    });
    call.timeout_ms = 500;
    assert!(a.http(&call).await.ok);
    let r = a.http(&call).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 0);
    let err = r.error.unwrap();
    assert!(err.contains("rate limit for 127.0.0.1:"), "{err}");
    assert!(err.contains("beyond the call's remaining time"), "{err}");
    assert_eq!(server.count("/echo"), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_breaker_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let a = actions(2, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("http://{addr}/"));
    call.retries = quick_retries(5);
    let r = a.http(&call).await;
    assert_eq!(r.attempts, 2);
    assert_eq!(r.status, None);
    assert!(
        r.output.starts_with("attempt 1: cannot connect"),
        "{}",
        r.output
    );
    assert!(r.error.unwrap().contains("circuit open"));
}

#[tokio::test]
async fn chat_and_webhook_notifications() {
    let (base, server) = backend().await;
    let a = actions(5, Duration::from_secs(30));
    let chat = |path: &str| Chat {
        webhook: format!("{base}{path}"),
        text: "deploy of web done".to_string(),
    };
    for n in [
        Notify::Slack(chat("/slack")),
        Notify::Discord(chat("/discord")),
        Notify::Webhook {
            url: format!("{base}/generic"),
            text: "deploy of web done".to_string(),
        },
    ] {
        let r = a.notify(&n).await;
        assert!(r.ok, "{n:?}: {r:?}");
        assert_eq!(r.attempts, 1);
    }
    for (path, body) in [
        ("/slack", r#"{"text":"deploy of web done"}"#),
        ("/discord", r#"{"content":"deploy of web done"}"#),
        ("/generic", r#"{"text":"deploy of web done"}"#),
    ] {
        let seen = server.seen(path);
        assert_eq!(seen.len(), 1, "{path}");
        assert_eq!(seen[0].body, body, "{path}");
        assert_eq!(seen[0].content_type, "application/json", "{path}");
    }
    // A webhook's URL is its credential: a failure names its host, not its path.
    let r = a.notify(&Notify::Slack(chat("/teapot"))).await;
    assert!(!r.ok);
    let host = base.trim_start_matches("http://");
    assert_eq!(
        r.error.as_deref(),
        Some(&*format!(
            "slack webhook http://{host}/…: 418 I'm a teapot (expected 2xx)"
        ))
    );
    assert!(!r.output.contains("/teapot"), "{}", r.output);
    // An invalid notification never reaches the network.
    let r = a
        .notify(&Notify::Webhook {
            url: format!("{base}/generic"),
            text: " ".to_string(),
        })
        .await;
    assert_eq!(r.error.as_deref(), Some("notify: notify.text is empty"));
    assert_eq!(server.count("/generic"), 1);

    // A webhook carries the caller's fields beside its text; chat webhooks the text alone.
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"level":"critical","text":"not this","value":93.5}"#).unwrap();
    let r = a
        .notify_with(
            &Notify::Webhook {
                url: format!("{base}/fields"),
                text: "disk is full".to_string(),
            },
            &data,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let r = a.notify_with(&Notify::Slack(chat("/slack")), &data).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        server.seen("/fields")[0].body,
        r#"{"level":"critical","text":"disk is full","value":93.5}"#
    );
    assert_eq!(
        server.seen("/slack")[1].body,
        r#"{"text":"deploy of web done"}"#
    );
}

#[tokio::test]
async fn email_through_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path()).unwrap();
    let a = actions(5, Duration::from_secs(30));
    let email = Email {
        to: vec!["ops@example.com".to_string(), "dev@example.com".to_string()],
        subject: "herd: deploy of web done".to_string(),
        text: "3 machines updated.\nNothing failed.".to_string(),
        from: "herd@example.com".to_string(),
        smtp: Smtp {
            host: "127.0.0.1".to_string(),
            port: smtp.addr.port(),
            tls: None,
            username: None,
            password: None,
        },
    };
    let r = a.notify(&Notify::Email(email.clone())).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.attempts, 1);
    assert_eq!(r.outputs["status"], "250");
    let got = smtp.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = got[0].replace("\r\n", "\n");
    assert!(m.contains("To: ops@example.com, dev@example.com\n"), "{m}");
    assert!(m.contains("From: herd@example.com\n"), "{m}");
    assert!(m.contains("Subject: herd: deploy of web done\n"), "{m}");
    assert!(
        m.contains("\n\n3 machines updated.\nNothing failed."),
        "{m}"
    );

    // With the server gone, the send fails with a line, and counts against its breaker.
    let port = smtp.addr.port();
    drop(smtp);
    let r = a.notify(&Notify::Email(email)).await;
    assert!(!r.ok);
    assert_eq!(r.attempts, 3);
    let err = r.error.unwrap();
    assert!(
        err.starts_with(&format!(
            "email to ops@example.com, dev@example.com through 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));
    let b = a.breakers();
    assert_eq!(b[0].host, format!("127.0.0.1:{port}"));
    assert_eq!(b[0].consecutive_failures, 3);
}

/// The scripted callee of the end-to-end tests answers as herd-actions expects.
#[tokio::test]
async fn against_the_testkit_callee() {
    let callee = herd_testkit::HttpCallee::start().unwrap();
    callee.fail_next(1);
    let a = actions(5, Duration::from_secs(30));
    let mut call = HttpCall::get(format!("{}/flaky", callee.url));
    call.retries = quick_retries(2);
    call.extract = BTreeMap::from([("id".to_string(), "$.items[1].id".to_string())]);
    let r = a.http(&call).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.outputs["id"], "def");
    assert_eq!(callee.received("/flaky").len(), 2);
    let r = a
        .http(&HttpCall::get(format!("{}/teapot", callee.url)))
        .await;
    assert_eq!(r.status, Some(418));
    let mut limited = HttpCall::get(format!("{}/limited", callee.url));
    limited.retries = Some(Retry {
        count: 1,
        backoff_ms: 10,
        max_backoff_ms: 2000,
    });
    assert!(a.http(&limited).await.ok);
    let seen = callee.received("/limited");
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
    let n = Notify::Webhook {
        url: format!("{}/hook", callee.url),
        text: "hi".to_string(),
    };
    assert!(a.notify(&n).await.ok);
    let hook = callee.received("/hook");
    assert_eq!(hook[0].method, "POST");
    assert_eq!(hook[0].body, r#"{"text":"hi"}"#);
    assert_eq!(hook[0].header("content-type"), Some("application/json"));
}
