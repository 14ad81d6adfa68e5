//! The OpenAPI components built from every type of the API: each schema is there, described,
//! and the queries give their parameters.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, OpenApi};

use crate::*;

#[derive(OpenApi)]
#[openapi(components(schemas(
    Agent,
    AgentsQuery,
    LabelEdit,
    LabelSource,
    BulkLabelEdit,
    CreateToken,
    CreatedToken,
    JoinToken,
    CreateKey,
    CreatedKey,
    ApiKey,
    RunRequest,
    RunQuery,
    Run,
    RunWithTasks,
    Task,
    OutputQuery,
    OutputStream,
    ListQuery,
    RunsQuery,
    TasksQuery,
    AuditEntry,
    GcReport,
    ErrorBody,
    AttachQuery,
    Progress,
    ServerMessage,
    ClientMessage,
    Facts,
    Disk,
    Metrics,
    RunSpec,
    RunLimits,
    Limit,
    TaskState,
    RunState,
    Blob,
    BlobQuery,
    CopyFile,
    FetchFile,
    FetchedQuery,
    Script,
    WindowSize,
    Breaker,
    BreakerState,
    TaskInput,
    Supervision,
    Health,
    CommandClass,
)))]
struct Components;

const NAMES: [&str; 50] = [
    "Agent",
    "AgentsQuery",
    "LabelEdit",
    "LabelSource",
    "BulkLabelEdit",
    "CreateToken",
    "CreatedToken",
    "JoinToken",
    "CreateKey",
    "CreatedKey",
    "ApiKey",
    "RunRequest",
    "RunQuery",
    "Run",
    "RunWithTasks",
    "Task",
    "OutputQuery",
    "OutputStream",
    "ListQuery",
    "RunsQuery",
    "TasksQuery",
    "AuditEntry",
    "GcReport",
    "ErrorBody",
    "AttachQuery",
    "Progress",
    "ServerMessage",
    "ClientMessage",
    "Facts",
    "Disk",
    "Metrics",
    "RunSpec",
    "RunLimits",
    "Limit",
    "TaskState",
    "RunState",
    "Blob",
    "BlobQuery",
    "CopyFile",
    "FetchFile",
    "FetchedQuery",
    "Script",
    "WindowSize",
    "Breaker",
    "BreakerState",
    "TaskInput",
    "Supervision",
    "Health",
    "CommandClass",
    "KeyRole",
];

fn document() -> serde_json::Value {
    serde_json::to_value(Components::openapi()).unwrap()
}

#[test]
fn components_hold_every_schema() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in NAMES {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    assert_eq!(schemas.len(), NAMES.len(), "{:?}", schemas.keys());
}

#[test]
fn doc_comments_become_descriptions() {
    let doc = document();
    let s = &doc["components"]["schemas"];
    for name in NAMES {
        let d = s[name]["description"].as_str().unwrap_or_default();
        assert!(!d.is_empty(), "{name} has no description: {:#}", s[name]);
    }
    assert_eq!(
        s["Task"]["properties"]["out_total"]["description"],
        "Bytes of output the task wrote (stdout and stderr), including any no longer stored."
    );
    assert_eq!(
        s["Facts"]["properties"]["cpus"]["description"],
        "Logical CPUs."
    );
}

/// Responses always carry every field, null where there is nothing to say: each is
/// required, and nullable where it may be null. The exceptions: what a task set through
/// `HERD_OUTPUT` (`outputs`, `condition`), absent when it set nothing, as most tasks do, and
/// its `supervision`, absent until its agent reported a change (most short tasks never get
/// one), so that listings of many tasks stay lean.
#[test]
fn response_fields_are_required() {
    let doc = document();
    let s = &doc["components"]["schemas"];
    for name in [
        "Agent",
        "CreatedToken",
        "JoinToken",
        "CreatedKey",
        "ApiKey",
        "Run",
        "Task",
    ] {
        let props = s[name]["properties"].as_object().unwrap();
        let required = s[name]["required"].as_array().unwrap();
        for k in props.keys() {
            if name == "Task" && (k == "outputs" || k == "condition" || k == "supervision") {
                assert!(!required.iter().any(|r| r == k.as_str()), "Task.{k}");
                continue;
            }
            assert!(
                required.iter().any(|r| r == k.as_str()),
                "{name}.{k} not required"
            );
        }
    }
    assert_eq!(s["Task"]["required"].as_array().unwrap().len(), 16);
    assert_eq!(
        s["Task"]["properties"]["exit_code"]["type"],
        serde_json::json!(["integer", "null"])
    );
}

/// Every property of every object schema has a description (nested `allOf`/`oneOf`
/// branches included).
#[test]
fn every_property_is_described() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v["properties"].as_object() {
            for (k, p) in props {
                // The tag of a message, which utoipa writes as a one-value enum.
                if k == "type" && p["enum"].is_array() {
                    continue;
                }
                let described = p["description"].is_string()
                    || p["allOf"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["description"].is_string()))
                    || p["oneOf"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["description"].is_string()));
                if !described {
                    missing.push(format!("{path}.{k}"));
                }
            }
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let Some(items) = v[key].as_array() {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}/{key}[{i}]"), item, missing);
                }
            }
        }
    }
    let doc = document();
    let mut missing = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        walk(name, schema, &mut missing);
    }
    assert!(missing.is_empty(), "undescribed: {missing:?}");
}

/// The wire forms the document promises: tagged messages, the two forms of a limit, states
/// as their names.
#[test]
fn schemas_describe_the_wire_forms() {
    let doc = document();
    let s = &doc["components"]["schemas"];
    let tags: Vec<String> = s["ServerMessage"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            let mut found = Vec::new();
            collect_enum(v, "type", &mut found);
            found
        })
        .collect();
    for t in ServerMessage::TYPES {
        assert!(tags.iter().any(|x| x == t), "{t} not in {tags:?}");
    }
    let limit = s["Limit"]["oneOf"].as_array().unwrap();
    assert_eq!(limit[0]["type"], "integer");
    assert_eq!(limit[1]["type"], "string");
    let states: Vec<&str> = s["TaskState"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let want: Vec<&str> = TaskState::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(states, want);
}

/// Every value of an `enum` under property `prop`, anywhere below `v`.
fn collect_enum(v: &serde_json::Value, prop: &str, out: &mut Vec<String>) {
    if let Some(e) = v["properties"][prop]["enum"].as_array() {
        out.extend(e.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(items) = v[key].as_array() {
            for item in items {
                collect_enum(item, prop, out);
            }
        }
    }
}

#[test]
fn queries_give_their_parameters() {
    let names = |params: Vec<utoipa::openapi::path::Parameter>| -> Vec<String> {
        params.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(
        names(ListQuery::into_params(|| None)),
        ["limit", "since", "machine", "who"]
    );
    for params in [
        RunsQuery::into_params(|| None),
        TasksQuery::into_params(|| None),
    ] {
        assert_eq!(names(params), ["limit", "since", "state", "machine", "who"]);
    }
    assert_eq!(names(RunQuery::into_params(|| None)), ["wait"]);
    assert_eq!(names(AgentsQuery::into_params(|| None)), ["target", "all"]);
    assert_eq!(names(OutputQuery::into_params(|| None)), ["stream"]);
    assert_eq!(
        names(AttachQuery::into_params(|| None)),
        ["from_end", "no_output"]
    );
}

/// A schema given inline (not a reference) reads as JSON Schema the document can hold.
#[test]
fn limit_schema_is_inline() {
    use utoipa::PartialSchema;
    assert!(matches!(Limit::schema(), RefOr::T(Schema::OneOf(_))));
}
