//! herd-ai's client against a real HTTP server started here (axum on 127.0.0.1:0) that speaks
//! the chat-completions wire format and answers from a script: each request takes the next
//! scripted answer. Every assertion on what was sent is made on what the server received.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herd_ai::{Budget, Llm, LlmConfig, LlmError, Message, ResponseSchema, parse_plan};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn ok(content: &str, prompt: u64, completion: u64) -> Answer {
    Answer {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "test-model-2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })
        .to_string(),
        delay: Duration::ZERO,
    }
}

fn status(code: u16, body: &str) -> Answer {
    Answer {
        status: code,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    authorization: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Backend {
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
}

impl Backend {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn completions(State(b): State<Arc<Backend>>, headers: HeaderMap, body: Bytes) -> Response {
    b.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let next = b.script.lock().unwrap().pop_front();
    let Some(a) = next else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no scripted answer left").into_response();
    };
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut resp = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (k, v) in a.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

/// A server answering `script` in order, and a config pointing at it.
async fn server(script: Vec<Answer>) -> (Arc<Backend>, LlmConfig) {
    let backend = Arc::new(Backend {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = LlmConfig::new(format!("http://{addr}/v1"), "test-model");
    config.timeout = Duration::from_secs(20);
    config.max_retries = 2;
    (backend, config)
}

fn schema() -> ResponseSchema {
    ResponseSchema {
        name: "plan".into(),
        schema: json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}),
    }
}

const PLAN: &str = r#"{"summary":"install nginx","steps":[{"id":"install","description":"install it","command":"apt-get install -y nginx","expected":"exit 0","depends_on":[],"targets":["web1"],"risk":"safe","approved":true}]}"#;

fn msgs() -> Vec<Message> {
    vec![
        Message::system("answer in JSON"),
        Message::user("install nginx"),
    ]
}

#[tokio::test]
async fn structured_output_is_asked_for_and_the_plan_parsed() {
    let (backend, mut config) = server(vec![ok(PLAN, 100, 40)]).await;
    config.api_key = Some("sk-test".into());
    config.budget.max_tokens_per_request = 777;
    let llm = Llm::new(config).unwrap();
    let reply = llm.chat(&msgs(), Some(&schema())).await.unwrap();
    assert_eq!(reply.model, "test-model-2");
    assert_eq!(reply.usage.prompt_tokens, 100);
    assert_eq!(reply.raw["id"], "chatcmpl-1");
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    let body = &seen[0].body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 777);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "answer in JSON"})
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "plan");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        schema().schema
    );
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));

    // The model's "risk" and "approved" labels are not kept.
    let plan = parse_plan(&reply.content).unwrap();
    assert_eq!(plan.steps[0].command, "apt-get install -y nginx");
    let step = serde_json::to_value(&plan.steps[0]).unwrap();
    assert!(
        step.get("risk").is_none() && step.get("approved").is_none(),
        "{step}"
    );
}

#[tokio::test]
async fn without_a_schema_no_response_format_and_no_key_no_authorization() {
    let (backend, config) = server(vec![ok("hello", 1, 1)]).await;
    let llm = Llm::new(config).unwrap();
    assert_eq!(llm.chat(&msgs(), None).await.unwrap().content, "hello");
    let seen = backend.seen();
    assert!(seen[0].body.get("response_format").is_none());
    assert_eq!(seen[0].authorization, None);
}

#[tokio::test]
async fn a_server_refusing_response_format_is_asked_again_and_remembered() {
    let refuse = |what: &str| {
        status(
            400,
            &json!({"error": {"message": format!("'response_format' of type '{what}' is not supported"), "type": "invalid_request_error"}}).to_string(),
        )
    };
    let (backend, config) = server(vec![
        refuse("json_schema"),
        refuse("json_object"),
        ok(PLAN, 1, 1),
        ok(PLAN, 1, 1),
    ])
    .await;
    let llm = Llm::new(config).unwrap();
    llm.chat(&msgs(), Some(&schema())).await.unwrap();
    llm.chat(&msgs(), Some(&schema())).await.unwrap();
    let formats: Vec<Value> = backend
        .seen()
        .iter()
        .map(|s| {
            s.body
                .get("response_format")
                .map_or(Value::Null, |f| f["type"].clone())
        })
        .collect();
    assert_eq!(
        formats,
        [
            json!("json_schema"),
            json!("json_object"),
            Value::Null,
            Value::Null
        ]
    );
}

#[tokio::test]
async fn a_400_about_something_else_is_an_error_not_a_fallback() {
    let (backend, config) = server(vec![status(
        400,
        r#"{"error":{"message":"context length exceeded"}}"#,
    )])
    .await;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), Some(&schema())).await.unwrap_err();
    assert!(matches!(e, LlmError::Status { status: 400, .. }), "{e:?}");
    assert!(e.to_string().contains("context length exceeded"), "{e}");
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn fenced_json_in_prose_is_found() {
    let content =
        format!("Sure! Here is the plan:\n\n```json\n{PLAN}\n```\n\nLet me know if you need more.");
    let (_backend, config) = server(vec![ok(&content, 1, 1)]).await;
    let llm = Llm::new(config).unwrap();
    let reply = llm.chat(&msgs(), Some(&schema())).await.unwrap();
    assert_eq!(parse_plan(&reply.content).unwrap().summary, "install nginx");
}

#[tokio::test]
async fn a_429_waits_out_retry_after_then_succeeds() {
    let mut busy = status(429, r#"{"error":{"message":"rate limited"}}"#);
    busy.headers.push(("retry-after", "1".into()));
    let (backend, config) = server(vec![busy, ok(PLAN, 1, 1)]).await;
    let llm = Llm::new(config).unwrap();
    llm.chat(&msgs(), None).await.unwrap();
    let seen = backend.seen();
    assert_eq!(seen.len(), 2);
    // Waited at least what the server asked (a lower bound, never flaky).
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_retry_after_beyond_the_timeout_fails_at_once() {
    let mut busy = status(429, "slow down");
    busy.headers.push(("retry-after", "3600".into()));
    let (backend, config) = server(vec![busy]).await;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Status { status: 429, .. }), "{e:?}");
    assert!(e.to_string().contains("slow down"), "{e}");
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_on_one_line() {
    let down = status(503, "upstream\nis down");
    let (backend, config) = server(vec![down.clone(), down.clone(), down]).await;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert_eq!(backend.seen().len(), 3, "the first attempt and 2 retries");
    let line = e.to_string();
    assert!(
        matches!(
            e,
            LlmError::Status {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        line.contains("503 after 3 attempts: upstream is down"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let mut slow = ok(PLAN, 1, 1);
    slow.delay = Duration::from_secs(30);
    let (_backend, mut config) = server(vec![slow]).await;
    config.timeout = Duration::from_millis(500);
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("did not answer within"), "{e}");
}

#[tokio::test]
async fn unauthorized_shows_the_servers_text_and_is_not_retried() {
    let (backend, config) = server(vec![status(
        401,
        r#"{"error":{"message":"Incorrect API key provided"}}"#,
    )])
    .await;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(
        matches!(e, LlmError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    let line = e.to_string();
    assert!(
        line.contains("Incorrect API key provided") && line.contains("HERD_LLM_API_KEY"),
        "{line}"
    );
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = LlmConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    config.max_retries = 1;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Unreachable { .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'));
}

#[tokio::test]
async fn five_megabytes_of_text_is_refused_cleanly() {
    let prose = "all work and no play ".repeat(250_000);
    let (_backend, config) = server(vec![ok(&prose, 1, 1)]).await;
    let llm = Llm::new(config).unwrap();
    let reply = llm.chat(&msgs(), None).await.unwrap();
    assert!(reply.content.len() > 5_000_000);
    let e = parse_plan(&reply.content).unwrap_err();
    assert!(e.contains("more than"), "{e}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let prose = "x".repeat(herd_ai::MAX_BODY + 1);
    let (_backend, config) = server(vec![ok(&prose, 1, 1)]).await;
    let llm = Llm::new(config).unwrap();
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::BadAnswer { .. }), "{e:?}");
    assert!(e.to_string().contains("larger than 8 MiB"), "{e}");
}

#[tokio::test]
async fn wrong_shapes_and_non_json_are_clear_errors() {
    let (_backend, config) = server(vec![
        ok(
            r#"{"summary":"s","steps":[{"id":"a","description":"d"}]}"#,
            1,
            1,
        ),
        ok("I'm sorry, I can't help with that.", 1, 1),
        status(200, "<html>not json</html>"),
        status(200, r#"{"choices":[]}"#),
    ])
    .await;
    let llm = Llm::new(config).unwrap();
    let c = llm.chat(&msgs(), None).await.unwrap().content;
    assert!(
        parse_plan(&c)
            .unwrap_err()
            .contains("steps[0].command: missing")
    );
    let c = llm.chat(&msgs(), None).await.unwrap().content;
    assert!(parse_plan(&c).unwrap_err().contains("no JSON object"));
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(
        matches!(e, LlmError::BadAnswer { .. }) && e.to_string().contains("not JSON"),
        "{e}"
    );
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(e.to_string().contains("choices[0].message: missing"), "{e}");
}

#[tokio::test]
async fn usage_is_summed_and_the_days_budget_refuses_without_a_request() {
    let (backend, mut config) =
        server(vec![ok(PLAN, 60, 20), ok(PLAN, 30, 10), ok(PLAN, 1, 1)]).await;
    config.budget = Budget {
        max_tokens_per_request: 100,
        max_tokens_per_day: 120,
    };
    let llm = Llm::new(config).unwrap();
    llm.chat(&msgs(), None).await.unwrap();
    llm.chat(&msgs(), None).await.unwrap();
    let usage = llm.usage();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (90, 30));
    assert_eq!(llm.used_today(), 120);
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert_eq!(
        e,
        LlmError::Budget {
            used: 120,
            limit: 120
        }
    );
    assert!(e.to_string().contains("budget"), "{e}");
    assert_eq!(
        backend.seen().len(),
        2,
        "no request once the budget is spent"
    );
}

#[tokio::test]
async fn a_server_that_reports_no_usage_is_counted_by_estimate() {
    let mut answer = ok(&"x".repeat(400), 0, 0);
    let mut body: Value = serde_json::from_str(&answer.body).unwrap();
    body.as_object_mut().unwrap().remove("usage");
    answer.body = body.to_string();
    let (backend, mut config) = server(vec![answer]).await;
    config.budget.max_tokens_per_day = 50;
    let llm = Llm::new(config).unwrap();
    llm.chat(&msgs(), None).await.unwrap();
    assert_eq!(llm.usage().completion_tokens, 100, "4 bytes a token");
    assert!(llm.usage().prompt_tokens > 0);
    let e = llm.chat(&msgs(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Budget { .. }), "{e:?}");
    assert_eq!(backend.seen().len(), 1);
}
