//! API keys on every request (`Authorization: Bearer hk_…`), and the creation of keys and
//! join tokens. Secrets are shown once and stored hashed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use herd_store::{ApiKeyRow, JoinTokenRow, Secret, now_ms, verify_secret};

use crate::State;
use crate::error::ServerError;

/// Who is calling: the name of the API key, as written to the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
}

impl FromRequestParts<Arc<State>> for Actor {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // Browsers cannot set headers on a WebSocket; accept the key as a query parameter too.
        let from_query = || {
            parts.uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("api_key="))
                    .map(str::to_string)
            })
        };
        let token = match header.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(t) => t.trim().to_string(),
            None => from_query().ok_or_else(|| {
                ServerError::Unauthorized(
                    "missing API key — send `Authorization: Bearer <key>` (the CLI reads it from its config or HERD_API_KEY)".into(),
                )
            })?,
        };
        check_api_key(st, &token).await
    }
}

pub async fn check_api_key(st: &State, token: &str) -> Result<Actor, ServerError> {
    let bad = || {
        ServerError::Unauthorized(
            "API key is not valid — check HERD_API_KEY or your herd config".into(),
        )
    };
    let (id, secret) = Secret::parse(token, "hk", "API key").map_err(|_| bad())?;
    let key = st.store.api_key(id).await?.ok_or_else(bad)?;
    if !verify_secret(secret, &key.hash) {
        return Err(bad());
    }
    if key.revoked_at.is_some() {
        return Err(ServerError::Unauthorized(format!(
            "API key {:?} has been revoked — ask an admin for a new one (`herd keys create`)",
            key.name
        )));
    }
    Ok(Actor {
        name: format!("key:{}", key.name),
    })
}

pub async fn create_api_key(
    st: &State,
    actor: &str,
    name: &str,
) -> Result<(String, ApiKeyRow), ServerError> {
    let s = Secret::generate("hk");
    let row = ApiKeyRow {
        id: s.id.clone(),
        name: name.to_string(),
        hash: s.hash,
        role: "admin".into(),
        created_at: now_ms(),
        created_by: actor.to_string(),
        revoked_at: None,
    };
    st.store.insert_api_key(&row).await?;
    st.store
        .audit(
            actor,
            "key.create",
            &format!("key:{}", row.id),
            &serde_json::json!({"name": name}).to_string(),
        )
        .await?;
    Ok((s.token, row))
}

pub async fn create_join_token(
    st: &State,
    actor: &str,
    ttl: Duration,
    uses: i64,
) -> Result<(String, JoinTokenRow), ServerError> {
    if uses < 1 {
        return Err(ServerError::BadRequest("--uses must be at least 1".into()));
    }
    let s = Secret::generate("hj");
    let now = now_ms();
    let row = JoinTokenRow {
        id: s.id.clone(),
        hash: s.hash,
        created_at: now,
        created_by: actor.to_string(),
        expires_at: now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64),
        uses_left: uses,
    };
    st.store.insert_join_token(&row).await?;
    st.store
        .audit(
            actor,
            "token.create",
            &format!("token:{}", row.id),
            &serde_json::json!({"ttl_secs": ttl.as_secs(), "uses": uses}).to_string(),
        )
        .await?;
    Ok((s.token, row))
}
