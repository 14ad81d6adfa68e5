//! Request extractors that answer every rejection the way the rest of the API does: a
//! status and `{"error": "one line"}` (the framework's own rejections are plain text). The
//! caller's API key comes first, so an unauthenticated request is refused before its body
//! is looked at.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::error::ServerError;
use crate::fleet::Actor;

impl FromRequestParts<Arc<App>> for Actor {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // Browsers cannot set headers on a WebSocket: an upgrade may carry the key as a query
        // parameter. Anywhere else a key in the URL would end up in logs and histories, so
        // it is refused rather than ignored.
        let from_query = query_api_key(parts.uri.query());
        if from_query.is_some() && !is_websocket_upgrade(&parts.headers) {
            return Err(ServerError::Unauthorized(
                "?api_key= is only for WebSocket upgrades — pass the API key in the Authorization header (`Authorization: Bearer <key>`)".into(),
            ));
        }
        // The dashboard offers the key as a WebSocket subprotocol (`herd-key.<key>`, beside
        // `herd`), which keeps it out of the URL.
        let from_protocol = if is_websocket_upgrade(&parts.headers) {
            protocol_api_key(&parts.headers)
        } else {
            None
        };
        let token = match header.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(t) => t.trim().to_string(),
            None => from_protocol.or(from_query).ok_or_else(|| {
                ServerError::Unauthorized(
                    "missing API key — send `Authorization: Bearer <key>` (the CLI reads it from its config or HERD_API_KEY)".into(),
                )
            })?,
        };
        let actor = app.fleet().authenticate_key(&token).await?;
        crate::listen::authenticated(parts.extensions.get());
        permitted(&actor, &parts.method, parts.uri.path())?;
        Ok(actor)
    }
}

/// What a key's role lets it call: a viewer reads only (a request that changes or runs
/// something is a 403), an operator manages no keys, join tokens or policies. Scopes and the
/// command policy are applied where runs are created (`crate::policy`).
fn permitted(actor: &Actor, method: &axum::http::Method, path: &str) -> Result<(), ServerError> {
    use herd_policy::Role;
    // Requests that read, whatever their method: checking a command, asking for a plan.
    const READS: [&str; 2] = ["/api/v1/policy/check", "/api/v1/ask/plan"];
    let reads = (method.is_safe() && path != "/api/v1/runs/start") || READS.contains(&path);
    let name = actor.name.strip_prefix("key:").unwrap_or(&actor.name);
    match actor.role {
        Role::Admin => Ok(()),
        Role::Viewer if !reads => Err(ServerError::Forbidden(format!(
            "API key {name:?} is a viewer key: it reads only, and {method} {path} changes or runs something — use an operator or admin key"
        ))),
        Role::Operator
            if !reads
                && ["/api/v1/keys", "/api/v1/tokens", "/api/v1/policy"]
                    .iter()
                    .any(|p| path == *p || path.starts_with(&format!("{p}/"))) =>
        {
            Err(ServerError::Forbidden(format!(
                "API key {name:?} is an operator key: only an admin key manages API keys, join tokens and the command policy ({method} {path})"
            )))
        }
        _ => Ok(()),
    }
}

/// The value of the `api_key` query parameter, if the query has one.
fn query_api_key(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == "api_key").then(|| v.to_string())
    })
}

/// The prefix of the WebSocket subprotocol that carries an API key.
pub const KEY_PROTOCOL: &str = "herd-key.";

/// The API key a WebSocket upgrade offers as a subprotocol (`Sec-WebSocket-Protocol: herd,
/// herd-key.<key>`), if it offers one.
fn protocol_api_key(headers: &axum::http::HeaderMap) -> Option<String> {
    crate::ws::offered_protocols(headers)
        .find_map(|p| p.strip_prefix(KEY_PROTOCOL).map(str::to_string))
}

/// Whether the request asks to switch to WebSocket (`Upgrade: websocket`).
fn is_websocket_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// A JSON object body; a body that is not a JSON object of the expected shape is a 400 with
/// a one-line error. (serde would also read a struct from an array; the API's bodies are
/// objects only.)
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + serde::Serialize, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let v = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) => return Err(bad_body(e.body_text())),
        };
        decode_object(v).map(Body)
    }
}

fn bad_body(why: String) -> ServerError {
    ServerError::BadRequest(format!(
        "bad request body: {why} — send a JSON object as described at /api/v1/openapi.json"
    ))
}

/// A body read as `T` the way [`Body`] reads one, from the text of a message (the run
/// request that opens `/api/v1/runs/start`).
pub(crate) fn decode_text<T: DeserializeOwned + serde::Serialize>(
    text: &str,
) -> Result<T, ServerError> {
    let v = serde_json::from_str(text).map_err(|e| bad_body(e.to_string()))?;
    decode_object(v)
}

/// A JSON object read as `T`; integral floats count as integers, and no string may hold a
/// NUL.
fn decode_object<T: DeserializeOwned + serde::Serialize>(
    mut v: serde_json::Value,
) -> Result<T, ServerError> {
    if !v.is_object() {
        return Err(bad_body("not a JSON object".into()));
    }
    integral_floats_to_integers(&mut v);
    let body: T = serde_json::from_value(v).map_err(|e| bad_body(e.to_string()))?;
    // What the request carries for herd (fields it does not know are ignored) may hold
    // no NUL.
    if serde_json::to_value(&body).is_ok_and(|v| has_nul(&v)) {
        return Err(bad_body("a string holds a NUL character".into()));
    }
    Ok(body)
}

/// Whether a string or key anywhere in `v` holds U+0000, which no text herd stores may hold
/// (PostgreSQL's text and JSON refuse it).
fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// JSON has one number type: `3.0` is the integer 3 to a JSON Schema `integer`, so a field
/// typed as an integer accepts it too.
fn integral_floats_to_integers(v: &mut serde_json::Value) {
    use serde_json::{Number, Value};
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
            {
                if f >= 0.0 && f < u64::MAX as f64 {
                    *n = Number::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(o) => o.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Query parameters; ones that do not parse are a 400 with a one-line error.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Stored text holds no NUL (PostgreSQL refuses one), so a filter cannot name one.
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ServerError::BadRequest(
                "bad query: it holds a NUL character".into(),
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ServerError::BadRequest(format!(
                "bad query: {} — see /api/v1/openapi.json",
                e.body_text()
            ))),
        }
    }
}

/// A path parameter; one that does not decode is a 400 with a one-line error.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains("%00") {
            return Err(ServerError::BadRequest(
                "bad path: it holds a NUL character".into(),
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ServerError::BadRequest(format!(
                "bad path: {}",
                e.body_text()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_offered_as_a_subprotocol() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let mut h = HeaderMap::new();
        assert_eq!(super::protocol_api_key(&h), None);
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("herd, herd-key.hk_ab_cd"),
        );
        assert_eq!(super::protocol_api_key(&h).as_deref(), Some("hk_ab_cd"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("herd"),
        );
        assert_eq!(super::protocol_api_key(&h), None);
    }

    #[test]
    fn integral_floats_read_as_integers() {
        let mut v = serde_json::json!({"a": 3.0, "b": [1.5, -2.0], "c": {"d": 1e3}, "e": "4.0"});
        super::integral_floats_to_integers(&mut v);
        assert!(super::has_nul(&serde_json::json!({"a": ["x\u{0}"]})));
        assert!(super::has_nul(&serde_json::json!({"k\u{0}": 1})));
        assert!(!super::has_nul(&serde_json::json!({"a": ["x\u{1}"]})));
        assert_eq!(
            v,
            serde_json::json!({"a": 3, "b": [1.5, -2], "c": {"d": 1000}, "e": "4.0"})
        );
        let n: u64 = serde_json::from_value(v["c"]["d"].clone()).unwrap();
        assert_eq!(n, 1000);
    }
}
