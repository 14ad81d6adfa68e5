//! The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str) -> Value {
    json!({"summary": summary, "tags": [tag], "responses": {
        "200": {"description": "OK", "content": {"application/json": {}}},
        "401": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}
    }})
}

fn with_body(mut v: Value, schema: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
    }
    v
}

fn id_param(name: &str) -> Value {
    json!([{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}])
}

pub fn document() -> Value {
    let run_request = json!({
        "type": "object", "required": ["command"],
        "properties": {
            "command": {"type": "string", "description": "Shell command, run as `bash -c`"},
            "targets": {"type": "array", "items": {"type": "string"}, "description": "Selectors, OR'ed: name glob `web-*`, `key=value`, `!`, `&` (AND), `,` (OR)"},
            "all": {"type": "boolean"},
            "timeout_ms": {"type": "integer"},
            "interactive": {"type": "boolean"},
            "tty": {"type": "boolean"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "cwd": {"type": "string"},
            "shell": {"type": "string"},
            "grace_ms": {"type": "integer"}
        }
    });
    json!({
        "openapi": "3.1.0",
        "info": {"title": "herd API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Control plane for Linux fleets. Every call needs `Authorization: Bearer <API key>`."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "string"}}}}}}},
            "schemas": {"RunRequest": run_request}
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/agents": {"get": op("List agents with online state, labels, facts and metrics", "agents")},
            "/api/v1/agents/{agent}": {"parameters": id_param("agent"), "get": op("One agent by name or id", "agents")},
            "/api/v1/agents/{agent}/labels": {"parameters": id_param("agent"), "post": with_body(op("Set and remove labels", "agents"), json!({"type":"object","properties":{"set":{"type":"object"},"remove":{"type":"array","items":{"type":"string"}}}}))},
            "/api/v1/agents/{agent}/revoke": {"parameters": id_param("agent"), "post": op("Revoke an agent's credential", "agents")},
            "/api/v1/tokens": {"get": op("Join tokens (without secrets): uses left, expiry", "tokens"), "post": with_body(op("Create a join token; answers with the `herd agent` command to run", "tokens"), json!({"type":"object","properties":{"ttl_secs":{"type":"integer"},"uses":{"type":"integer"}}}))},
            "/api/v1/keys": {"get": op("List API keys", "keys"), "post": with_body(op("Create an API key (shown once)", "keys"), json!({"type":"object","properties":{"name":{"type":"string"}}}))},
            "/api/v1/runs": {
                "get": op("Recent runs", "runs"),
                "post": with_body(op("Run a command on the machines the targets select; `?wait=true` answers when all tasks finished", "runs"), json!({"$ref": "#/components/schemas/RunRequest"}))
            },
            "/api/v1/runs/{id}": {"parameters": id_param("id"), "get": op("A run with its tasks", "runs")},
            "/api/v1/runs/{id}/cancel": {"parameters": id_param("id"), "post": op("Cancel every task of a run", "runs")},
            "/api/v1/runs/{id}/attach": {"parameters": id_param("id"), "get": op("WebSocket: live output and states of a run; send stdin as binary frames", "runs")},
            "/api/v1/tasks": {"get": op("Recent tasks", "tasks")},
            "/api/v1/tasks/{id}": {"parameters": id_param("id"), "get": op("One task", "tasks")},
            "/api/v1/tasks/{id}/cancel": {"parameters": id_param("id"), "post": op("Cancel a task (SIGTERM, then SIGKILL after a grace period)", "tasks")},
            "/api/v1/tasks/{id}/output": {"parameters": id_param("id"), "get": op("Stored output as bytes; `?stream=stdout|stderr`", "tasks")},
            "/api/v1/tasks/{id}/attach": {"parameters": id_param("id"), "get": op("WebSocket: live output of one task", "tasks")},
            "/api/v1/audit": {"get": op("Audit log, newest first", "audit")},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text exposition format"}}}}
        }
    })
}
