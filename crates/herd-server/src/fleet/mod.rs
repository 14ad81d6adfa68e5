//! The fleet: machines (join, hello and heartbeats, labels, revocation) and the credentials
//! that let people and agents in (API keys, join tokens, agent credentials). `FleetService`
//! is the only way in; every change goes to the store with its audit entry in one
//! transaction, and to the in-memory index (`index.rs`) that target resolution, session
//! authentication and listings read.

mod index;

use std::sync::Arc;
use std::time::Duration;

use herd_core::{Facts, LabelEdits, Labels, Metrics, Selector};
use herd_store::{
    AgentRow, ApiKeyRow, AuditEntry, JoinOutcome, JoinTokenRow, Secret, Store, now_ms,
    verify_secret,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use index::{AgentIndex, AgentView};

/// Refuses label edits that do not follow the label syntax.
fn check_label_edits(
    set: &std::collections::BTreeMap<String, String>,
    remove: &[String],
) -> Result<()> {
    for (k, v) in set {
        herd_core::parse_label(&format!("{k}={v}"))
            .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    }
    for k in remove {
        herd_core::check_label_key(k).map_err(|e| ServerError::BadRequest(e.to_string()))?;
    }
    Ok(())
}

/// `edits` with `set` and `remove` applied on top.
fn apply_label_edits(
    edits: &LabelEdits,
    set: &std::collections::BTreeMap<String, String>,
    remove: &[String],
) -> LabelEdits {
    let mut edits = edits.clone();
    for (k, v) in set {
        edits.insert(k.clone(), Some(v.clone()));
    }
    for k in remove {
        edits.insert(k.clone(), None);
    }
    edits
}

/// The revoked ones of `rows` that any of `sels` picks (all of them when `sels` is empty).
pub fn matching_revoked(rows: Vec<AgentRow>, sels: &[Selector]) -> Vec<AgentRow> {
    rows.into_iter()
        .filter(|a| a.revoked_at.is_some())
        .filter(|a| {
            let view = AgentView::new(a);
            sels.is_empty() || sels.iter().any(|s| s.matches(&view))
        })
        .collect()
}

use crate::error::{Result, ServerError};
use crate::registry::Registry;

/// The actor of a stored key: a role it does not know reads as viewer (it runs nothing).
fn key_actor(key: &ApiKeyRow) -> Actor {
    Actor {
        name: format!("key:{}", key.name),
        role: herd_policy::Role::parse(&key.role).unwrap_or(herd_policy::Role::Viewer),
        scope: key.scope.clone(),
    }
}

/// How often reported agent state (hellos, heartbeats) is written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Who is calling the API: the name of its key, as written to the audit log, with what the
/// key may do (its role) and the selector its runs stay within (its scope).
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: herd_policy::Role,
    pub scope: Option<String>,
}

impl Actor {
    /// The server itself (or a schedule acting for the person who added it): an admin
    /// with no scope.
    pub fn server(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            role: herd_policy::Role::Admin,
            scope: None,
        }
    }
}

/// A machine asking to join.
pub struct JoinRequest {
    pub token: String,
    pub name: String,
    pub labels: Labels,
    pub facts: Facts,
}

pub struct FleetService {
    store: Arc<dyn Store>,
    index: Arc<AgentIndex>,
    registry: Arc<Registry>,
    /// The server's URL and CA pin, for the join commands it prints.
    url: String,
    ca_fingerprint: Option<String>,
    /// The longest life a join token may be given (`--max-token-ttl`).
    max_token_ttl: Duration,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FleetService {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<AgentIndex>,
        registry: Arc<Registry>,
        url: String,
        ca_fingerprint: Option<String>,
        max_token_ttl: Duration,
    ) -> FleetService {
        FleetService {
            store,
            index,
            registry,
            url,
            ca_fingerprint,
            max_token_ttl,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn ca_fingerprint(&self) -> Option<&str> {
        self.ca_fingerprint.as_deref()
    }

    // ---- machines -----------------------------------------------------------------------

    /// Trades a join token for a new agent's credential; returns `(agent id, credential)`.
    pub async fn join(&self, req: JoinRequest) -> Result<(String, String)> {
        let bad = || {
            ServerError::Unauthorized(
                "join token is not valid — create one with `herd token create`".into(),
            )
        };
        let (token_id, secret) =
            Secret::parse(&req.token, "hj", "join token").map_err(|_| bad())?;
        let tok = self.store.join_token(token_id).await?.ok_or_else(bad)?;
        if !verify_secret(secret, &tok.hash) {
            return Err(bad());
        }
        let now = now_ms();
        if tok.expires_at <= now {
            return Err(ServerError::Unauthorized(
                "join token has expired — create a new one with `herd token create`".into(),
            ));
        }
        if tok.uses_left <= 0 {
            return Err(ServerError::Unauthorized(
                "join token has been used up or revoked — create a new one with `herd token create --uses N`"
                    .into(),
            ));
        }
        if !valid_name(&req.name) {
            return Err(ServerError::BadRequest(format!(
                "agent name {:?} is not valid: use 1-64 letters, digits, '.', '_' or '-'",
                req.name
            )));
        }
        let taken = || {
            ServerError::Conflict(format!(
                "an agent named {:?} already exists — pick another --name, or revoke the old one with `herd agents revoke {}`",
                req.name, req.name
            ))
        };
        if self.index.by_name(&req.name).is_some() {
            return Err(taken());
        }
        if self.index.get(&req.name).is_some() || self.store.agent(&req.name).await?.is_some() {
            return Err(ServerError::BadRequest(format!(
                "agent name {:?} is another agent's id — pick another --name",
                req.name
            )));
        }
        let cred = Secret::generate("ha");
        let agent = AgentRow {
            id: cred.id.clone(),
            name: req.name.clone(),
            cred_hash: cred.hash.clone(),
            labels: req.labels,
            label_edits: LabelEdits::new(),
            // What the token allows bounds what the agent's declared labels can make it hold,
            // for the agent's life (a token used up or deleted later changes nothing).
            allowed_labels: tok.labels.clone(),
            facts: req.facts,
            metrics: None,
            version: String::new(),
            created_at: now,
            last_seen: None,
            revoked_at: None,
        };
        let audit = AuditEntry::new(
            format!("agent:{}", req.name),
            "agent.join",
            format!("agent:{}", agent.id),
            json!({"name": req.name, "token": token_id}),
        );
        match self.store.join_agent(token_id, now, &agent, &audit).await? {
            JoinOutcome::Joined => {}
            JoinOutcome::NameTaken => return Err(taken()),
            JoinOutcome::TokenSpent => {
                return Err(ServerError::Unauthorized(
                    "join token has been used up or expired — create a new one with `herd token create`".into(),
                ));
            }
        }
        self.index.insert(agent);
        Ok((cred.id, cred.token))
    }

    /// The live agent a session credential belongs to; a revoked one is told so.
    pub async fn authenticate_agent(&self, token: &str) -> Result<AgentRow> {
        let bad = || {
            ServerError::Unauthorized(
                "agent credential is not valid — join again with a new token (`herd token create`)"
                    .into(),
            )
        };
        let (id, secret) = Secret::parse(token, "ha", "agent credential").map_err(|_| bad())?;
        // Live agents authenticate from memory; only an unknown id costs a lookup (to tell
        // a revoked agent why it is refused).
        let agent = match self.index.get(id) {
            Some(a) => a,
            None => self.store.agent(id).await?.ok_or_else(bad)?,
        };
        if !verify_secret(secret, &agent.cred_hash) {
            return Err(bad());
        }
        if agent.revoked_at.is_some() {
            return Err(ServerError::Forbidden(format!(
                "agent {:?} has been revoked — join again with a new token (`herd token create`) and a fresh --state-dir",
                agent.name
            )));
        }
        Ok(agent)
    }

    /// An agent said hello: what it reports replaces what it reported before.
    pub fn hello(&self, agent_id: &str, labels: Labels, facts: Facts, version: String) {
        self.index.hello(agent_id, labels, facts, version, now_ms());
    }

    /// A heartbeat: last seen and the latest metrics (written with the next flush).
    pub fn heartbeat(&self, agent_id: &str, metrics: Option<Metrics>) {
        self.index.seen(agent_id, metrics, now_ms());
    }

    /// Registered (not revoked) agents.
    pub fn agent_count(&self) -> usize {
        self.index.len()
    }

    /// The machines `target` picks (every one without a target), by name; revoked ones too
    /// when `all`.
    pub async fn list(&self, target: Option<&str>, all: bool) -> Result<Vec<AgentRow>> {
        let sels = match target {
            Some(t) => {
                vec![Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?]
            }
            None => Vec::new(),
        };
        let mut rows: Vec<AgentRow> = if sels.is_empty() {
            self.index.list()
        } else {
            self.index
                .resolve(&sels, false)
                .into_iter()
                .filter_map(|(id, _)| self.index.get(&id))
                .collect()
        };
        if all {
            rows.extend(matching_revoked(self.store.agents(true).await?, &sels));
            rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.created_at.cmp(&b.created_at)));
        }
        Ok(rows)
    }

    /// Counts of every machine and of those `target` picks, with how many are online.
    pub fn summary(&self, target: Option<&str>) -> Result<herd_api::FleetSummary> {
        let every = self.index.resolve(&[], true);
        let online = |ids: &[(String, String)]| {
            ids.iter()
                .filter(|(id, _)| self.registry.is_online(id))
                .count() as u64
        };
        let (total, total_online) = (every.len() as u64, online(&every));
        let (matched, matched_online) = match target {
            Some(t) if !t.trim().is_empty() => {
                let sel = Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?;
                let picked = self.index.resolve(&[sel], false);
                (picked.len() as u64, online(&picked))
            }
            _ => (total, total_online),
        };
        Ok(herd_api::FleetSummary {
            total,
            online: total_online,
            matched,
            matched_online,
        })
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        self.registry.is_online(agent_id)
    }

    /// An agent by name or id; revoked ones too.
    pub async fn agent(&self, key: &str) -> Result<AgentRow> {
        // Ids first: a name can never shadow another agent's id (join refuses such names).
        if let Some(a) = self.index.get(key).or_else(|| self.index.by_name(key)) {
            return Ok(a);
        }
        // Revoked agents are only in the store.
        if let Some(a) = self.store.agent(key).await? {
            return Ok(a);
        }
        Err(ServerError::NotFound(format!(
            "no agent named {key:?} — see `herd agents`"
        )))
    }

    /// Sets and removes labels of an agent (operator edits win over what it reports).
    pub async fn label(
        &self,
        actor: &Actor,
        key: &str,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<AgentRow> {
        let a = self.agent(key).await?;
        check_label_edits(set, remove)?;
        let edits = apply_label_edits(&a.label_edits, set, remove);
        let audit = AuditEntry::new(
            &actor.name,
            "agent.label",
            format!("agent:{}", a.name),
            json!({"set": set, "remove": remove}),
        );
        let row = self
            .store
            .set_label_edits(&a.id, &edits, &audit)
            .await?
            .ok_or_else(|| ServerError::NotFound(format!("agent {key:?} vanished")))?;
        self.index.set_label_edits(&a.id, edits);
        // The index holds what hellos and heartbeats reported since the last flush.
        Ok(self.index.get(&a.id).unwrap_or(row))
    }

    /// Sets and removes labels of every live machine `target` picks, in one change with one
    /// audit entry per machine; returns the machines as they are now.
    pub async fn label_many(
        &self,
        actor: &Actor,
        target: &str,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Vec<AgentRow>> {
        check_label_edits(set, remove)?;
        let sel = Selector::parse(target).map_err(|e| ServerError::BadRequest(e.to_string()))?;
        let picked = self.index.resolve(&[sel], false);
        if picked.is_empty() {
            return Err(ServerError::Conflict(format!(
                "no machine matches {target:?} ({} known) — see `herd agents` for names and labels",
                self.index.len()
            )));
        }
        let changes: Vec<(String, LabelEdits, AuditEntry)> = picked
            .iter()
            .filter_map(|(id, _)| self.index.get(id))
            .map(|a| {
                let audit = AuditEntry::new(
                    &actor.name,
                    "agent.label",
                    format!("agent:{}", a.name),
                    json!({"set": set, "remove": remove, "target": target}),
                );
                (
                    a.id.clone(),
                    apply_label_edits(&a.label_edits, set, remove),
                    audit,
                )
            })
            .collect();
        let rows = self.store.set_many_label_edits(&changes).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                self.index.set_label_edits(&row.id, row.label_edits.clone());
                self.index.get(&row.id).unwrap_or(row)
            })
            .collect())
    }

    /// Revokes an agent's credential and ends its session.
    pub async fn revoke(&self, actor: &Actor, key: &str) -> Result<AgentRow> {
        let a = self.agent(key).await?;
        let audit = AuditEntry::new(
            &actor.name,
            "agent.revoke",
            format!("agent:{}", a.name),
            json!({}),
        );
        let row = self
            .store
            .revoke_agent(&a.id, now_ms(), &audit)
            .await?
            .ok_or_else(|| ServerError::NotFound(format!("agent {key:?} vanished")))?;
        self.index.remove(&a.id);
        self.registry.disconnect(&a.id);
        Ok(row)
    }

    /// Writes reported agent state to the store every few seconds, in one transaction, until
    /// shutdown (then once more).
    pub async fn flush_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                _ = shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    async fn flush(&self) {
        let batch = self.index.take_dirty();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.flush_agents(&batch).await {
            tracing::warn!(error = %e, agents = batch.len(), "cannot record agent heartbeats");
        }
    }

    // ---- credentials --------------------------------------------------------------------

    /// The caller of an API request, from its bearer key.
    pub async fn authenticate_key(&self, token: &str) -> Result<Actor> {
        let bad = || {
            ServerError::Unauthorized(
                "API key is not valid — check HERD_API_KEY or your herd config".into(),
            )
        };
        let (id, secret) = Secret::parse(token, "hk", "API key").map_err(|_| bad())?;
        let key = self.store.api_key(id).await?.ok_or_else(bad)?;
        if !verify_secret(secret, &key.hash) {
            return Err(bad());
        }
        if key.revoked_at.is_some() {
            return Err(ServerError::Unauthorized(format!(
                "API key {:?} has been revoked — ask an admin for a new one (`herd keys create`)",
                key.name
            )));
        }
        Ok(key_actor(&key))
    }

    /// Creates an API key; returns the key (shown once) and its row.
    pub async fn create_api_key(
        &self,
        actor: &str,
        name: &str,
        role: herd_policy::Role,
        scope: Option<String>,
    ) -> Result<(String, ApiKeyRow)> {
        if let Some(sel) = &scope
            && (sel.chars().count() > 1024 || sel.is_empty() || sel.chars().any(char::is_control))
        {
            return Err(ServerError::BadRequest(format!(
                "scope {:?} is not a selector: use 1-1024 characters, no control characters — e.g. --scope role=web",
                herd_core::escape_controls(sel)
            )));
        }
        if let Some(sel) = &scope {
            herd_core::Selector::parse(sel).map_err(|e| {
                ServerError::BadRequest(format!(
                    "scope {sel:?} is not a selector: {e} — e.g. --scope role=web"
                ))
            })?;
        }
        let s = Secret::generate("hk");
        let row = ApiKeyRow {
            id: s.id.clone(),
            name: name.to_string(),
            hash: s.hash,
            role: role.as_str().into(),
            scope,
            created_at: now_ms(),
            created_by: actor.to_string(),
            revoked_at: None,
        };
        let audit = AuditEntry::new(
            actor,
            "key.create",
            format!("key:{}", row.id),
            json!({"name": name, "role": row.role, "scope": row.scope}),
        );
        self.store
            .create_api_key(&row, &audit)
            .await
            .map_err(|e| match e {
                herd_store::StoreError::Conflict(why) => ServerError::Conflict(format!(
                    "{why} (revoked keys keep their names) — pick another --name"
                )),
                e => e.into(),
            })?;
        Ok((s.token, row))
    }

    /// The first start of a store makes the admin key (shown once).
    pub async fn ensure_admin_key(&self) -> Result<Option<String>> {
        if self.store.count_api_keys().await? > 0 {
            return Ok(None);
        }
        let (key, _) = self
            .create_api_key("server", "admin", herd_policy::Role::Admin, None)
            .await?;
        Ok(Some(key))
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        Ok(self.store.api_keys().await?)
    }

    /// Revokes an API key named by its name or id (or given whole). The key of the request
    /// itself is refused (so nobody locks themselves out by accident): revoke it with another
    /// key.
    pub async fn revoke_api_key(&self, actor: &Actor, key: &str) -> Result<ApiKeyRow> {
        let key = Secret::parse(key, "hk", "API key").map_or(key, |(id, _)| id);
        let keys = self.store.api_keys().await?;
        let k = keys
            .iter()
            .find(|k| k.name == key)
            .or_else(|| keys.iter().find(|k| k.id == key))
            .ok_or_else(|| {
                ServerError::NotFound(format!("no API key named {key:?} — see `herd keys ls`"))
            })?;
        if actor.name == format!("key:{}", k.name) {
            return Err(ServerError::Conflict(format!(
                "API key {:?} is the key of this request — revoke it with another admin key (`herd keys create`)",
                k.name
            )));
        }
        let audit = AuditEntry::new(
            &actor.name,
            "key.revoke",
            format!("key:{}", k.id),
            json!({"name": k.name}),
        );
        self.store
            .revoke_api_key(&k.id, now_ms(), &audit)
            .await?
            .ok_or_else(|| ServerError::NotFound(format!("API key {key:?} vanished")))
    }

    /// Creates a join token valid for `ttl` and `uses` machines; returns the token (shown
    /// once) and its row.
    pub async fn create_join_token(
        &self,
        actor: &str,
        ttl: Duration,
        uses: i64,
        labels: Option<Labels>,
    ) -> Result<(String, JoinTokenRow)> {
        for (k, v) in labels.iter().flatten() {
            let checked = if v == "*" {
                herd_core::check_label_key(k)
            } else {
                herd_core::parse_label(&format!("{k}={v}")).map(|_| ())
            };
            checked.map_err(|e| ServerError::BadRequest(format!("token label {k}={v}: {e}")))?;
        }
        if uses < 1 {
            return Err(ServerError::BadRequest("--uses must be at least 1".into()));
        }
        if ttl > self.max_token_ttl {
            return Err(ServerError::BadRequest(format!(
                "a join token lives at most {} on this server (--max-token-ttl), not {} — pass a shorter --ttl",
                herd_core::format_duration(self.max_token_ttl),
                herd_core::format_duration(ttl)
            )));
        }
        if uses > herd_api::CreateToken::MAX_USES {
            return Err(ServerError::BadRequest(format!(
                "--uses must be at most {}",
                herd_api::CreateToken::MAX_USES
            )));
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
            labels,
        };
        let audit = AuditEntry::new(
            actor,
            "token.create",
            format!("token:{}", row.id),
            json!({"ttl_secs": ttl.as_secs(), "uses": uses, "labels": row.labels}),
        );
        self.store.create_join_token(&row, &audit).await?;
        Ok((s.token, row))
    }

    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>> {
        Ok(self.store.join_tokens().await?)
    }

    /// Revokes a join token by id (or given whole): no machine joins with it any more.
    pub async fn revoke_join_token(&self, actor: &Actor, id: &str) -> Result<JoinTokenRow> {
        let id = Secret::parse(id, "hj", "join token").map_or(id, |(id, _)| id);
        let audit = AuditEntry::new(
            &actor.name,
            "token.revoke",
            format!("token:{id}"),
            json!({}),
        );
        self.store
            .revoke_join_token(id, &audit)
            .await?
            .ok_or_else(|| {
                ServerError::NotFound(format!("no join token {id:?} — see `herd token ls`"))
            })
    }

    /// The longest life a join token may be given.
    pub fn max_token_ttl(&self) -> Duration {
        self.max_token_ttl
    }

    /// The command a new machine runs to join with `token`. The token travels in the
    /// environment, not on the agent's command line (which any local user can read).
    pub fn join_command(&self, token: &str, labels: Option<&Labels>) -> String {
        let mut cmd = format!("HERD_JOIN_TOKEN={token} herd agent --server {}", self.url);
        if let Some(fp) = &self.ca_fingerprint {
            cmd.push_str(&format!(" --ca-sha256 {fp}"));
        }
        cmd.push_str(" --name NAME --state-dir /var/lib/herd-agent");
        // The labels the token allows with one value: what a machine joining with it is
        // meant to declare (`k=*` ones are the machine's to choose).
        for (k, v) in labels.into_iter().flatten().filter(|(_, v)| *v != "*") {
            cmd.push_str(&format!(" --label {k}={v}"));
        }
        cmd
    }
}
