//! herd-actions' LangFlow client over a real connection: against a small server written here
//! that speaks LangFlow's wire format (its answers copied from LangFlow 1.13: flows with `data`
//! as an object and as a string, 403 `{"detail": …}` for a refused key, a 500 whose detail
//! holds the flow's error, hangs, 503s), and against a real LangFlow (`herd_testkit::LangFlow`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herd_actions::langflow::{
    self, LangflowError, RunRequest, Source, parse_tweak, resolve_tweaks,
};
use herd_actions::{Actions, ActionsConfig, BreakerPhase};
use serde_json::{Value, json};

const KEY: &str = "sk-good";

#[derive(Default)]
struct Fake {
    /// `GET /api/v1/flows/` answers 503 this many more times.
    flows_failures: AtomicU32,
    flows_calls: AtomicU32,
    run_calls: AtomicU32,
    /// The bodies `/run` received, by flow.
    runs: Mutex<Vec<(String, Value)>>,
}

fn graph(input: &str, output: &str) -> Value {
    let io = "lfx.components.input_output";
    json!({"nodes": [
        {"id": input, "type": "genericNode", "data": {"id": input, "type": "ChatInput", "node": {
            "display_name": "Chat Input", "metadata": {"module": format!("{io}.chat.ChatInput")},
            "template": {"input_value": {"type": "str", "value": "", "display_name": "Input Text"}}}}},
        {"id": output, "type": "genericNode", "data": {"id": output, "type": "ChatOutput", "node": {
            "display_name": "Chat Output", "metadata": {"module": format!("{io}.chat_output.ChatOutput")},
            "template": {"sender_name": {"type": "str", "value": "AI", "display_name": "Sender Name", "advanced": true}}}}}
    ], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}})
}

fn refused(headers: &HeaderMap) -> Option<Response> {
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(KEY) => None,
        Some("sk-401") => Some(
            (
                StatusCode::UNAUTHORIZED,
                [("content-type", "application/json")],
                r#"{"detail":"Not authenticated"}"#,
            )
                .into_response(),
        ),
        _ => Some(
            (
                StatusCode::FORBIDDEN,
                [("content-type", "application/json")],
                r#"{"detail":"Invalid API key"}"#,
            )
                .into_response(),
        ),
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn whoami(headers: HeaderMap) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    json_response(StatusCode::OK, json!({"id": "u1", "username": "langflow"}))
}

async fn flows(State(f): State<Arc<Fake>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    f.flows_calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        uri.query(),
        Some("get_all=true&remove_example_flows=true"),
        "the listing asks for every flow without the examples"
    );
    let left = f.flows_failures.load(Ordering::SeqCst);
    if left > 0 {
        f.flows_failures.store(left - 1, Ordering::SeqCst);
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": "database is locked"}),
        );
    }
    json_response(
        StatusCode::OK,
        json!([
            {"id": "f-obj", "name": "echo", "description": "echoes", "endpoint_name": "echo",
             "updated_at": "2026-12-07T01:48:08+00:00", "is_component": false,
             "data": graph("ChatInput-a1", "ChatOutput-b2")},
            {"id": "f-str", "name": "as string", "description": null, "endpoint_name": null,
             "updated_at": "2026-12-07T01:50:00+00:00", "is_component": false,
             "data": graph("ChatInput-c3", "ChatOutput-d4").to_string()},
            {"id": "f-comp", "name": "a saved component", "is_component": true, "data": {}}
        ]),
    )
}

/// LangFlow's answer to a chat run: the text in every place LangFlow puts it.
fn run_answer(text: &str, session: &str, sender_name: &str) -> Value {
    json!({"session_id": session, "outputs": [{"inputs": {"input_value": text}, "outputs": [{
        "results": {"message": {"text_key": "text", "data": {"text": text, "sender_name": sender_name, "error": false},
                                "sender": "Machine", "sender_name": sender_name, "session_id": session,
                                "error": false, "category": "message", "text": text}},
        "artifacts": {"message": text, "sender": "Machine", "sender_name": sender_name, "type": "object"},
        "outputs": {"message": {"message": text, "type": "text"}},
        "messages": [{"message": text, "sender": "Machine", "sender_name": sender_name,
                      "session_id": session, "component_id": "ChatOutput-b2", "type": "text"}],
        "component_display_name": "Chat Output", "component_id": "ChatOutput-b2"}]}]})
}

async fn run(
    State(f): State<Arc<Fake>>,
    Path(flow): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    f.run_calls.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_slice(&body).unwrap();
    f.runs.lock().unwrap().push((flow.clone(), req.clone()));
    let input = req["input_value"].as_str().unwrap_or("").to_string();
    let session = req["session_id"].as_str().unwrap_or("f-obj").to_string();
    match flow.as_str() {
        "echo" | "f-obj" => {
            let sender = req
                .pointer("/tweaks/ChatOutput-b2/sender_name")
                .and_then(Value::as_str)
                .unwrap_or("AI");
            json_response(StatusCode::OK, run_answer(&input, &session, sender))
        }
        "fails" => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": json!({"message": "Error running graph: Error building Component Chat Output: \n\nboom",
                                    "traceback": null, "description": null, "code": null, "suggestion": null}).to_string()}),
        ),
        "inside" => json_response(
            StatusCode::OK,
            json!({"session_id": "s", "outputs": [{"inputs": {}, "outputs": [{
                "component_display_name": "Agent",
                "results": {"message": {"text": "Error: the model is not reachable", "error": true, "category": "error"}}}]}]}),
        ),
        "unavailable" => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": "the worker pool is full"}),
        ),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        "html" => (StatusCode::OK, "<html>not langflow</html>").into_response(),
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"detail": format!("Flow identifier {flow} not found")}),
        ),
    }
}

async fn fake() -> (String, Arc<Fake>) {
    let f = Arc::new(Fake::default());
    let app = Router::new()
        .route("/lf/api/v1/users/whoami", get(whoami))
        .route("/lf/api/v1/flows/", get(flows))
        .route("/lf/api/v1/run/{flow}", post(run))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/lf/"), f)
}

fn source(url: &str, key: &str) -> Source {
    Source {
        url: url.to_string(),
        api_key: key.to_string(),
    }
}

fn request(flow: &str, input: &str) -> RunRequest {
    RunRequest {
        flow: flow.to_string(),
        input: input.to_string(),
        tweaks: BTreeMap::new(),
        session_id: None,
        timeout: Duration::from_secs(10),
    }
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn check_accepts_the_key_and_names_a_refused_one() {
    let (url, _f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    langflow::check(&a, &source(&url, KEY), T).await.unwrap();
    let e = langflow::check(&a, &source(&url, "sk-wrong"), T)
        .await
        .unwrap_err();
    assert_eq!(e, LangflowError::Unauthorized("Invalid API key".into()));
    assert!(
        e.to_string()
            .starts_with("the API key was refused (Invalid API key) — "),
        "{e}"
    );
    let e = langflow::check(&a, &source(&url, "sk-401"), T)
        .await
        .unwrap_err();
    assert_eq!(e, LangflowError::Unauthorized("Not authenticated".into()));
    let e = langflow::check(&a, &source(&url, ""), T).await.unwrap_err();
    assert!(matches!(e, LangflowError::Invalid(_)), "{e}");
    // A refused key is a healthy host.
    assert_eq!(a.breakers()[0].consecutive_failures, 0);
}

#[tokio::test]
async fn flows_are_listed_with_data_as_object_or_string() {
    let (url, f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    let flows = langflow::list_flows(&a, &source(&url, KEY), T)
        .await
        .unwrap();
    let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["echo", "as string"]);
    let (obj, st) = (&flows[0], &flows[1]);
    assert_eq!(obj.id, "f-obj");
    assert_eq!(obj.endpoint_name.as_deref(), Some("echo"));
    assert_eq!(obj.updated_at.as_deref(), Some("2026-12-07T01:48:08+00:00"));
    assert_eq!(obj.summary.inputs[0].id, "ChatInput-a1");
    assert_eq!(obj.summary.outputs[0].id, "ChatOutput-b2");
    assert_eq!(obj.summary.outputs[0].params[0].name, "sender_name");
    assert!(obj.data["nodes"].is_array());
    assert_eq!(st.endpoint_name, None);
    assert_eq!(st.description, "");
    assert_eq!(st.summary.inputs[0].id, "ChatInput-c3");
    assert_eq!(st.summary.components.len(), 2);
    assert_eq!(st.data, graph("ChatInput-c3", "ChatOutput-d4"));
    assert_eq!(f.flows_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_listing_is_retried_through_503s_and_then_names_langflows_text() {
    let (url, f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    f.flows_failures.store(2, Ordering::SeqCst);
    let flows = langflow::list_flows(&a, &source(&url, KEY), T)
        .await
        .unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(f.flows_calls.load(Ordering::SeqCst), 3);

    f.flows_failures.store(10, Ordering::SeqCst);
    let e = langflow::list_flows(&a, &source(&url, KEY), T)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        LangflowError::Status {
            status: 503,
            detail: "database is locked".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "LangFlow answered 503 Service Unavailable: database is locked — see LangFlow's log"
    );
    assert_eq!(f.flows_calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_run_sends_input_tweaks_and_session_and_reads_the_text() {
    let (url, f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    let src = source(&url, KEY);
    let flows = langflow::list_flows(&a, &src, T).await.unwrap();
    let raw = vec![parse_tweak("Chat Output.sender_name=herd").unwrap()];
    let tweaks = resolve_tweaks(&flows[0].summary, &raw).unwrap();
    let mut req = request("echo", "hello");
    req.tweaks = tweaks;
    req.session_id = Some("sess-1".into());
    let answer = langflow::run_flow(&a, &src, &req).await.unwrap();
    assert_eq!(answer.text.as_deref(), Some("hello"));
    assert_eq!(answer.session_id.as_deref(), Some("sess-1"));
    assert_eq!(
        answer
            .response
            .pointer("/outputs/0/outputs/0/messages/0/sender_name"),
        Some(&json!("herd"))
    );
    // An empty input is not sent (the flow's own, or a tweak's, applies).
    req.input = String::new();
    req.session_id = None;
    langflow::run_flow(&a, &src, &req).await.unwrap();
    let runs = f.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[1].1,
        json!({"input_type": "chat", "output_type": "chat",
               "tweaks": {"ChatOutput-b2": {"sender_name": "herd"}}})
    );
    assert_eq!(runs[0].0, "echo");
    assert_eq!(
        runs[0].1,
        json!({"input_value": "hello", "input_type": "chat", "output_type": "chat",
               "tweaks": {"ChatOutput-b2": {"sender_name": "herd"}}, "session_id": "sess-1"})
    );
}

#[tokio::test]
async fn run_failures_carry_langflows_text_and_are_not_retried() {
    let (url, f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    let src = source(&url, KEY);
    let run = |flow: &'static str| {
        let (a, src) = (a.clone(), src.clone());
        async move { langflow::run_flow(&a, &src, &request(flow, "hi")).await }
    };

    let e = run("fails").await.unwrap_err();
    assert_eq!(
        e,
        LangflowError::FlowError(
            "Error running graph: Error building Component Chat Output: boom".into()
        )
    );
    assert!(
        e.to_string()
            .starts_with("the flow failed: Error running graph"),
        "{e}"
    );

    let e = run("inside").await.unwrap_err();
    assert_eq!(
        e,
        LangflowError::FlowError("Agent: Error: the model is not reachable".into())
    );

    let e = run("nosuch").await.unwrap_err();
    assert_eq!(
        e,
        LangflowError::Status {
            status: 404,
            detail: "Flow identifier nosuch not found".into()
        }
    );

    let before = f.run_calls.load(Ordering::SeqCst);
    let e = run("unavailable").await.unwrap_err();
    assert_eq!(
        e,
        LangflowError::Status {
            status: 503,
            detail: "the worker pool is full".into()
        }
    );
    assert_eq!(
        f.run_calls.load(Ordering::SeqCst),
        before + 1,
        "a run that reached LangFlow is not sent again"
    );

    let e = run("html").await.unwrap_err();
    assert!(
        matches!(e, LangflowError::BadAnswer(ref s) if s.contains("not JSON")),
        "{e}"
    );

    let e = langflow::run_flow(&a, &source(&url, "sk-nope"), &request("echo", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, LangflowError::Unauthorized(_)), "{e}");

    // A failed flow, a 404 and a refused key are a healthy host: the answers after the 503
    // closed its count again.
    let b = &a.breakers()[0];
    assert_eq!(b.consecutive_failures, 0, "{b:?}");
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_a_timeout() {
    let (url, f) = fake().await;
    let a = Actions::new(ActionsConfig::default());
    let mut req = request("hang", "hi");
    req.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let e = langflow::run_flow(&a, &source(&url, KEY), &req)
        .await
        .unwrap_err();
    assert_eq!(e, LangflowError::Timeout(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        e.to_string()
            .starts_with("LangFlow did not answer within 300ms"),
        "{e}"
    );
    assert_eq!(f.run_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_source_opens_its_breaker_and_then_fails_at_once() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = Actions::new(ActionsConfig {
        breaker_threshold: 3,
        ..ActionsConfig::default()
    });
    let src = source(&format!("http://127.0.0.1:{port}"), KEY);
    let e = langflow::check(&a, &src, T).await.unwrap_err();
    assert!(matches!(e, LangflowError::Unreachable(_)), "{e}");
    assert!(e.to_string().starts_with("cannot reach LangFlow: "), "{e}");
    let b = &a.breakers()[0];
    assert_eq!(b.phase, BreakerPhase::Open, "three attempts: {b:?}");
    let attempts = a.stats().attempts;
    let e = langflow::run_flow(&a, &src, &request("echo", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, LangflowError::BreakerOpen(_)), "{e}");
    assert!(
        e.to_string().starts_with("circuit open for 127.0.0.1:"),
        "{e}"
    );
    assert_eq!(
        a.stats().attempts,
        attempts,
        "no attempt reached the network"
    );
}

/// A real LangFlow: the key, the listing, a run with a tweak, the wrong key, a removed flow.
#[test]
fn a_real_langflow_lists_and_runs_its_flows() {
    let lf = herd_testkit::LangFlow::start().unwrap();
    println!("LangFlow answered /health after {:?}", lf.started_in);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = Actions::new(ActionsConfig::default());
        let src = source(lf.url(), lf.api_key());
        let t = Duration::from_secs(60);
        langflow::check(&a, &src, t).await.unwrap();

        let e = langflow::check(&a, &source(lf.url(), "sk-not-a-key"), t)
            .await
            .unwrap_err();
        assert!(matches!(e, LangflowError::Unauthorized(_)), "{e}");
        let e = langflow::list_flows(&a, &source(lf.url(), "sk-not-a-key"), t)
            .await
            .unwrap_err();
        assert!(matches!(e, LangflowError::Unauthorized(_)), "{e}");

        let flows = langflow::list_flows(&a, &src, t).await.unwrap();
        let echo = flows.iter().find(|f| f.name == "echo").unwrap();
        assert_eq!(echo.id, lf.flow_id());
        assert_eq!(echo.endpoint_name.as_deref(), Some(lf.endpoint_name()));
        assert!(echo.updated_at.is_some());
        let kinds = |cs: &[langflow::Component]| -> Vec<String> {
            cs.iter().map(|c| c.kind.clone()).collect()
        };
        assert_eq!(kinds(&echo.summary.inputs), ["ChatInput"]);
        assert_eq!(kinds(&echo.summary.outputs), ["ChatOutput"]);
        let input = &echo.summary.inputs[0];
        assert_eq!(input.display_name, "Chat Input");
        assert!(input.params.iter().any(|p| p.name == "input_value"));
        assert!(input.params.iter().all(|p| p.name != "code"));

        // By endpoint name, with a tweak resolved from the summary by display name.
        let raw = vec![parse_tweak("Chat Output.sender_name=herd").unwrap()];
        let mut req = request(lf.endpoint_name(), "hello");
        req.tweaks = resolve_tweaks(&echo.summary, &raw).unwrap();
        req.timeout = t;
        let answer = langflow::run_flow(&a, &src, &req).await.unwrap();
        assert_eq!(answer.text.as_deref(), Some("hello"));
        assert_eq!(answer.session_id.as_deref(), Some(lf.flow_id()));
        let sender = answer
            .response
            .pointer("/outputs/0/outputs/0/messages/0/sender_name");
        assert_eq!(sender, Some(&json!("herd")), "the tweak applied");

        // By id, in a session of its own, the input set by a tweak instead.
        let raw = vec![parse_tweak("ChatInput.input_value=from a tweak").unwrap()];
        let mut req = request(lf.flow_id(), "");
        req.tweaks = resolve_tweaks(&echo.summary, &raw).unwrap();
        req.session_id = Some("herd-session".into());
        req.timeout = t;
        let answer = langflow::run_flow(&a, &src, &req).await.unwrap();
        assert_eq!(answer.text.as_deref(), Some("from a tweak"));
        assert_eq!(answer.session_id.as_deref(), Some("herd-session"));

        // LangFlow refuses an input and a tweak of the same input: its text is the error.
        req.input = "both".into();
        let e = langflow::run_flow(&a, &src, &req).await.unwrap_err();
        match &e {
            LangflowError::Status {
                status: 400,
                detail,
            } => {
                assert!(detail.contains("cannot pass a tweak"), "{e}")
            }
            other => panic!("{other}"),
        }

        // No such flow; a flow that fails while running.
        let e = langflow::run_flow(&a, &src, &request("no-such-flow", "x"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, LangflowError::Status { status: 404, .. }),
            "{e}"
        );
        lf.create_failing_flow("fails", "fails").unwrap();
        let e = langflow::run_flow(&a, &src, &request("fails", "x"))
            .await
            .unwrap_err();
        match &e {
            LangflowError::FlowError(text) => assert!(text.contains("boom from herd"), "{e}"),
            other => panic!("{other}"),
        }
        assert_eq!(
            a.breakers()[0].consecutive_failures,
            0,
            "a failed flow is a healthy host"
        );

        // A second flow appears in the listing; removed upstream, it is gone and cannot run.
        let second = lf.create_echo_flow("second", "second-flow").unwrap();
        let names: Vec<String> = langflow::list_flows(&a, &src, t)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert!(names.contains(&"second".to_string()), "{names:?}");
        let answer = langflow::run_flow(&a, &src, &request("second-flow", "again"))
            .await
            .unwrap();
        assert_eq!(answer.text.as_deref(), Some("again"));
        lf.delete_flow(&second).unwrap();
        let flows = langflow::list_flows(&a, &src, t).await.unwrap();
        assert!(flows.iter().all(|f| f.id != second), "deleted upstream");
        let e = langflow::run_flow(&a, &src, &request(&second, "x"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, LangflowError::Status { status: 404, .. }),
            "{e}"
        );
    });
}
