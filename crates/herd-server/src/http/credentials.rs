//! `/api/v1/tokens` and `/api/v1/keys`: join tokens for new machines, API keys for people and
//! programs. Secrets are shown once, when created.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use herd_api::{ApiKey, CreateKey, CreateToken, CreatedKey, CreatedToken, ErrorBody, JoinToken};
use herd_store::now_ms;

use super::extract::{Body, Path};
use crate::app::App;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::fleet::Actor;

/// A token's life when the request names none.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Creates a join token; answers with the `herd agent` command a new machine runs.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 200, description = "The token (shown only now) and the join command", body = CreatedToken),
        (status = 400, description = "Uses or life out of range (longer than the server's --max-token-ttl), a label that is not valid, both labels and any_labels, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn create_token(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<CreateToken>,
) -> Result<Json<CreatedToken>> {
    let fleet = app.fleet();
    let ttl = match req.ttl_secs {
        None => DEFAULT_TOKEN_TTL.min(fleet.max_token_ttl()),
        Some(s) if (1..=CreateToken::MAX_TTL_SECS).contains(&s) => Duration::from_secs(s),
        Some(s) => {
            return Err(ServerError::BadRequest(format!(
                "a join token lives 1 s to 10 years, not {s} s — pass a shorter --ttl"
            )));
        }
    };
    // Without either, a machine that joins holds none of the labels it declares.
    let labels = match (req.labels, req.any_labels) {
        (Some(_), Some(true)) => {
            return Err(ServerError::BadRequest(
                "a token allows either some labels or any labels, not both — drop --any-labels or --label".into(),
            ));
        }
        (None, Some(true)) => None,
        (labels, _) => Some(labels.unwrap_or_default()),
    };
    let (token, row) = fleet
        .create_join_token(&actor.name, ttl, req.uses.unwrap_or(1), labels)
        .await?;
    Ok(Json(CreatedToken {
        join_command: fleet.join_command(&token, row.labels.as_ref()),
        token,
        id: row.id,
        expires_at: row.expires_at,
        uses: row.uses_left,
        labels: row.labels,
        server: fleet.url().to_string(),
        ca_sha256: fleet.ca_fingerprint().map(str::to_string),
    }))
}

/// Join tokens, newest first, without their secrets: uses left and expiry.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, description = "Every join token", body = Vec<JoinToken>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list_tokens(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<JoinToken>>> {
    let now = now_ms();
    let rows = app.fleet().join_tokens().await?;
    Ok(Json(
        rows.into_iter()
            .map(|t| convert::join_token(t, now))
            .collect(),
    ))
}

/// Creates an API key (shown only in this answer).
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 200, description = "The key (shown only now)", body = CreatedKey),
        (status = 400, description = "A name that is not valid, or a body that does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 409, description = "Another key (revoked or not) has this name", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn create_key(
    actor: Actor,
    State(app): State<Arc<App>>,
    Body(req): Body<CreateKey>,
) -> Result<Json<CreatedKey>> {
    let name = req.name.unwrap_or_else(|| "unnamed".into());
    if !CreateKey::valid_name(&name) {
        return Err(ServerError::BadRequest(format!(
            "key name {name:?} is not valid: use 1-64 characters, no control characters"
        )));
    }
    let role = crate::ask::role(req.role);
    let (key, row) = app
        .fleet()
        .create_api_key(&actor.name, &name, role, req.scope)
        .await?;
    Ok(Json(CreatedKey {
        key,
        id: row.id,
        name: row.name,
        role: row.role,
        scope: row.scope,
        created_at: row.created_at,
    }))
}

/// API keys, oldest first, without their secrets.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses(
        (status = 200, description = "Every API key", body = Vec<ApiKey>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn list_keys(_: Actor, State(app): State<Arc<App>>) -> Result<Json<Vec<ApiKey>>> {
    let rows = app.fleet().api_keys().await?;
    Ok(Json(rows.into_iter().map(convert::api_key).collect()))
}

/// Revokes a join token by id: no machine joins with it any more (machines that joined
/// stay).
#[utoipa::path(post, path = "/api/v1/tokens/{token}/revoke", tag = "tokens",
    params(("token" = String, Path, description = "The token's id (`herd token ls`), or the token itself")),
    responses(
        (status = 200, description = "The token, revoked (no use left)", body = JoinToken),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn revoke_token(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<JoinToken>> {
    let row = app.fleet().revoke_join_token(&actor, &id).await?;
    Ok(Json(convert::join_token(row, now_ms())))
}

/// Revokes an API key by name or id: requests with it answer 401 from now on. The key of
/// the request itself cannot be revoked (use another admin key).
#[utoipa::path(post, path = "/api/v1/keys/{key}/revoke", tag = "keys",
    params(("key" = String, Path, description = "The key's name or id (`herd keys ls`), or the key itself")),
    responses(
        (status = 200, description = "The key, revoked", body = ApiKey),
        (status = 400, description = "The request does not decode", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "A viewer key (it reads only), or an operator key on API keys, join tokens or the policy", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is the one this request uses", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn revoke_key(
    actor: Actor,
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<ApiKey>> {
    let row = app.fleet().revoke_api_key(&actor, &key).await?;
    Ok(Json(convert::api_key(row)))
}

/// Who the presented API key is: its name, role and scope.
#[utoipa::path(get, path = "/api/v1/me", tag = "keys",
    responses(
        (status = 200, description = "The caller's key", body = herd_api::Me),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "The server failed", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ))]
pub async fn me(actor: Actor) -> Result<Json<herd_api::Me>> {
    Ok(Json(herd_api::Me {
        name: actor
            .name
            .strip_prefix("key:")
            .unwrap_or(&actor.name)
            .to_string(),
        role: actor.role.as_str().to_string(),
        scope: actor.scope,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }))
}
