//! The command policy and key scopes, applied to every run herd creates: typed runs (`POST
//! /api/v1/runs`, `/api/v1/runs/start`), job and workflow starts (each machine step's command
//! or script), schedules (when added, by the person adding them, and again at each fire), and
//! `herd ask` runs. `cp` and `fetch` runs run no command: only the scope applies to them.
//!
//! The policy (`herd_policy::PolicySet`: a default, one per role, rules for the machines of a
//! selector) is stored as versions (`herd policy set`, audited `policy.set` with the version
//! in the same transaction); this server keeps the current one in memory and looks at the
//! latest version number in the store at most every [`LOOK_EVERY`] when it decides, so a
//! version another server stored is picked up within that time.
//!
//! A decision: `allow` runs; `approve` runs only when the request carries a person's approval
//! (recorded in the audit entry); `deny` never runs (403). A viewer runs nothing; a key's
//! scope (a selector) bounds the machines its runs may pick: a run that picks another is
//! refused, naming it. **Invariant:** nothing runs on a machine unless the policy as it stands
//! allows the command for the caller's role on those machines, or a person approved it where
//! the policy asks for approval; the class comes from the command text only.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use herd_api::{PolicyVersion, StepCheck};
use herd_core::Selector;
use herd_policy::{Decision, PolicySet, Role};
use herd_store::{AuditEntry, PolicyRow, Store, now_ms};
use serde_json::json;

use crate::error::{Result, ServerError};
use crate::fleet::{Actor, AgentIndex};

/// How often, at most, the store is asked for the latest policy version.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// The largest policy text accepted.
const MAX_POLICY_BYTES: usize = 256 * 1024;

/// A policy version in memory.
pub struct Current {
    pub version: i64,
    pub set: PolicySet,
    pub created_at: i64,
    pub created_by: String,
}

/// Who asks for a run, with their approval: what [`PolicyGate::gate`] checks.
#[derive(Debug, Clone)]
pub struct Gate {
    pub actor: Actor,
    /// A person approved commands the policy sends for approval.
    pub approve: bool,
    /// Whether the run's command is checked (`false`: a copy or fetch run, scope only).
    pub commands: bool,
}

impl Gate {
    pub fn new(actor: &Actor, approve: bool) -> Gate {
        Gate {
            actor: actor.clone(),
            approve,
            commands: true,
        }
    }
}

/// A command's check under the current policy: what the audit entry records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub version: i64,
    pub class: String,
    pub decision: String,
    pub reasons: Vec<String>,
    /// The approval the decision needed was given.
    pub approved: bool,
}

pub struct PolicyGate {
    store: Arc<dyn Store>,
    index: Arc<AgentIndex>,
    current: RwLock<Arc<Current>>,
    looked: Mutex<Option<Instant>>,
}

fn default_current() -> Current {
    Current {
        version: 0,
        set: PolicySet::default(),
        created_at: 0,
        created_by: "server".into(),
    }
}

fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    }
}

/// A stored version, read back (it was checked when it was set).
fn current_of(row: PolicyRow) -> Result<Current> {
    let set: PolicySet = serde_json::from_str(&row.body).map_err(|e| {
        ServerError::Store(herd_store::StoreError::Corrupt {
            what: format!("policies.body of version {}", row.version),
            why: e.to_string(),
        })
    })?;
    Ok(Current {
        version: row.version,
        set,
        created_at: row.created_at,
        created_by: row.created_by,
    })
}

fn answer(c: &Current) -> PolicyVersion {
    PolicyVersion {
        version: c.version,
        created_at: c.created_at,
        created_by: c.created_by.clone(),
        policy: serde_json::to_value(&c.set).unwrap_or_default(),
    }
}

/// Reads a policy set from YAML or JSON text: one line naming the path of what is wrong.
pub fn parse(text: &str) -> std::result::Result<PolicySet, String> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "the policy is {} bytes, over the limit of {MAX_POLICY_BYTES}",
            text.len()
        ));
    }
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "not valid YAML: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?
    };
    if !value.is_object() {
        return Err("expected a mapping of default, by_role and by_label at the top".into());
    }
    // Each role's policy first: a path through a map of roles would not name the role.
    if let Some(roles) = value.get("by_role").and_then(|v| v.as_object()) {
        for (k, v) in roles {
            if Role::parse(k).is_none() {
                return Err(format!(
                    "by_role.{k}: not a role — use admin, operator or viewer"
                ));
            }
            typed::<herd_policy::Policy>(v, &format!("by_role.{k}"))?;
        }
    }
    let set: PolicySet = typed(&value, "")?;
    set.validate().map_err(|e| e.0)?;
    for (i, r) in set.by_label.iter().enumerate() {
        Selector::parse(&r.selector).map_err(|e| format!("by_label[{i}].selector: {e}"))?;
    }
    Ok(set)
}

/// `value` read as a `T`; an error names the path of the bad field under `at`.
fn typed<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    at: &str,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let why = e.inner().to_string();
        match (at, path.as_str()) {
            ("", ".") => why,
            (at, ".") => format!("{at}: {why}"),
            ("", p) => format!("{p}: {why}"),
            (at, p) => format!("{at}.{p}: {why}"),
        }
    })
}

/// How a script is read: a shell script (no `#!` line, or one naming a shell) is classified
/// as a command; a script of another language is not parsed, and is Dangerous (fail closed).
fn script_text(body: &str) -> std::result::Result<&str, String> {
    let Some(first) = body.strip_prefix("#!") else {
        return Ok(body);
    };
    let line = first.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    let mut prog = words.next().unwrap_or("");
    if prog.ends_with("/env") {
        prog = words.find(|w| !w.starts_with('-')).unwrap_or("");
    }
    let name = prog.rsplit('/').next().unwrap_or(prog);
    if matches!(name, "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash") {
        Ok(body)
    } else {
        Err(format!(
            "a {} script is not read by the command policy — approve it, or write it in shell",
            if name.is_empty() { "non-shell" } else { name }
        ))
    }
}

/// A workflow expression (`${{ … }}`) in a step's command: a value known only when the step
/// runs, read as an unquoted variable (so a program name from one is Dangerous).
pub fn without_expressions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("$HERD_EXPR");
                rest = &rest[start + end + 2..];
            }
            None => {
                out.push_str("$HERD_EXPR");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl PolicyGate {
    pub fn new(store: Arc<dyn Store>, index: Arc<AgentIndex>) -> PolicyGate {
        PolicyGate {
            store,
            index,
            current: RwLock::new(Arc::new(default_current())),
            looked: Mutex::new(None),
        }
    }

    fn held(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn hold(&self, c: Current) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if c.version >= cur.version {
            *cur = Arc::new(c);
        }
    }

    /// The current policy: the one in memory, after a look at the store's latest version
    /// number when the last look is older than [`LOOK_EVERY`].
    pub async fn current(&self) -> Result<Arc<Current>> {
        let look = {
            let mut looked = crate::lock(&self.looked);
            let due = looked.is_none_or(|t| t.elapsed() >= LOOK_EVERY);
            if due {
                *looked = Some(Instant::now());
            }
            due
        };
        if look {
            let latest = self.store.policy_version().await?;
            if latest > self.held().version
                && let Some(row) = self.store.policy(Some(latest)).await?
            {
                self.hold(current_of(row)?);
            }
        }
        Ok(self.held())
    }

    /// Stores `text` as the policy's next version (audited `policy.set` in the same
    /// transaction) and uses it from now on.
    pub async fn set(&self, actor: &Actor, text: &str) -> Result<PolicyVersion> {
        let set = parse(text).map_err(|e| {
            ServerError::BadRequest(format!(
                "the policy does not check out: {e} — see `herd policy show` for the shape"
            ))
        })?;
        let body = serde_json::to_string(&set).map_err(|e| ServerError::Internal(e.to_string()))?;
        let latest = self.store.policy_version().await?;
        let row = PolicyRow {
            version: latest + 1,
            body,
            created_at: now_ms(),
            created_by: actor.name.clone(),
        };
        let audit = AuditEntry::new(
            &actor.name,
            "policy.set",
            format!("policy:{}", row.version),
            json!({"version": row.version, "policy": set}),
        );
        self.store
            .put_policy(&row, &audit)
            .await
            .map_err(|e| match e {
                herd_store::StoreError::Conflict(why) => ServerError::Conflict(format!(
                    "{why} — look at `herd policy history` and set it again"
                )),
                e => e.into(),
            })?;
        let c = current_of(row)?;
        let answer = answer(&c);
        self.hold(c);
        Ok(answer)
    }

    /// Version `version` (`None`: the current one; 0: the built-in default).
    pub async fn show(&self, version: Option<i64>) -> Result<PolicyVersion> {
        match version {
            None => Ok(answer(&*self.current().await?)),
            Some(0) => Ok(answer(&default_current())),
            Some(v) => {
                let row = self.store.policy(Some(v)).await?.ok_or_else(|| {
                    ServerError::NotFound(format!(
                        "no policy version {v} — `herd policy history` lists them"
                    ))
                })?;
                Ok(answer(&current_of(row)?))
            }
        }
    }

    /// Every stored version, newest first.
    pub async fn history(&self) -> Result<Vec<PolicyVersion>> {
        let mut out = Vec::new();
        for row in self.store.policies().await? {
            out.push(answer(&current_of(row)?));
        }
        Ok(out)
    }

    /// The ids of the machines `selector` picks now.
    fn picks(&self, selector: &str) -> BTreeSet<String> {
        match Selector::parse(selector) {
            Ok(s) => self
                .index
                .resolve(&[s], false)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// The actor `name` acting for `by` (a schedule for the person who added it): the role
    /// and scope of `by`'s API key (`key:NAME`, revoked or not); anyone else is the server.
    pub async fn acting_for(&self, name: &str, by: &str) -> Result<Actor> {
        let Some(key) = by.strip_prefix("key:") else {
            return Ok(Actor::server(name));
        };
        let keys = self.store.api_keys().await?;
        let k = keys.iter().find(|k| k.name == key);
        Ok(Actor {
            name: name.to_string(),
            // A key that is gone runs nothing.
            role: k.and_then(|k| Role::parse(&k.role)).unwrap_or(Role::Viewer),
            scope: k.and_then(|k| k.scope.clone()),
        })
    }

    /// The machines `selectors` pick now (none is not an error here: what runs says so).
    pub fn machines(&self, selectors: &[String]) -> Result<Vec<(String, String)>> {
        let mut sels = Vec::with_capacity(selectors.len());
        for t in selectors {
            sels.push(Selector::parse(t).map_err(|e| ServerError::BadRequest(e.to_string()))?);
        }
        if sels.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.index.resolve(&sels, false))
    }

    /// What the current policy does with `command` by `role` on `machines` (`(id, name)`).
    pub async fn check(
        &self,
        role: Role,
        command: &str,
        machines: &[(String, String)],
    ) -> Result<(i64, StepCheck)> {
        let c = self.current().await?;
        Ok((c.version, self.check_with(&c.set, role, command, machines)))
    }

    fn check_with(
        &self,
        set: &PolicySet,
        role: Role,
        command: &str,
        machines: &[(String, String)],
    ) -> StepCheck {
        if command.contains("${{") {
            return StepCheck {
                class: "forbidden".into(),
                decision: "deny".into(),
                reasons: vec![
                    "`${{` would be read as a workflow expression (variables, secrets) — write the value itself".into(),
                ],
            };
        }
        let verdict = herd_policy::classify(command);
        let mut decision = set.decide(role, &verdict, |sel| {
            let picked = self.picks(sel);
            machines.iter().any(|(id, _)| picked.contains(id))
        });
        let mut reasons: Vec<String> = verdict
            .reasons
            .iter()
            .map(|r| format!("{}: {} ({})", r.class, r.why, r.what))
            .collect();
        if role == Role::Viewer {
            decision = Decision::Deny;
            reasons.insert(0, "a viewer key runs nothing".into());
        }
        StepCheck {
            class: verdict.class.as_str().into(),
            decision: decision_str(decision).into(),
            reasons,
        }
    }

    /// Whether every machine is within the actor's scope; else a 403 naming the first one
    /// that is not.
    pub fn within_scope(&self, actor: &Actor, machines: &[(String, String)]) -> Result<()> {
        let Some(scope) = &actor.scope else {
            return Ok(());
        };
        let inside = self.picks(scope);
        if let Some((_, name)) = machines.iter().find(|(id, _)| !inside.contains(id)) {
            return Err(ServerError::Forbidden(format!(
                "machine {name:?} is outside the scope {scope:?} of API key {:?} — target machines within it",
                actor.name.strip_prefix("key:").unwrap_or(&actor.name)
            )));
        }
        Ok(())
    }

    /// Whether the machine named `key` (a name or an agent id) is within the actor's scope,
    /// for label edits and revocations: a scoped key never reaches a machine outside its
    /// scope, nor relabels one into it. A machine not in the index (unknown, revoked) is left
    /// to the caller's own answer.
    pub fn machine_within_scope(&self, actor: &Actor, key: &str) -> Result<()> {
        if actor.scope.is_none() {
            return Ok(());
        }
        let row = self.index.by_name(key).or_else(|| self.index.get(key));
        match row {
            Some(a) => self.within_scope(actor, &[(a.id, a.name)]),
            None => Ok(()),
        }
    }

    /// The gate of a run on `machines`: the scope, then (unless it runs no command) the
    /// command — `what` names it in errors (`the command`, `step build`) — or the script.
    /// `deny` is a 403, `approve` without the approval a 409 saying how to approve;
    /// otherwise the check, for the audit entry.
    pub async fn gate(
        &self,
        gate: &Gate,
        what: &str,
        command: &str,
        script: Option<&str>,
        machines: &[(String, String)],
    ) -> Result<Option<Checked>> {
        if gate.actor.role == Role::Viewer {
            return Err(ServerError::Forbidden(format!(
                "API key {:?} is a viewer key: it runs nothing — use an operator or admin key",
                gate.actor
                    .name
                    .strip_prefix("key:")
                    .unwrap_or(&gate.actor.name)
            )));
        }
        self.within_scope(&gate.actor, machines)?;
        if !gate.commands {
            return Ok(None);
        }
        let c = self.current().await?;
        let check = match script.map(script_text) {
            Some(Err(why)) => {
                let mut check = self.check_with(&c.set, gate.actor.role, "true", machines);
                let d = c
                    .set
                    .policy(gate.actor.role)
                    .rules
                    .for_class(herd_policy::Class::Dangerous);
                check.class = "dangerous".into();
                check.decision = decision_str(d.max(Decision::Approve)).into();
                check.reasons = vec![format!("dangerous: {why}")];
                check
            }
            Some(Ok(body)) => self.check_with(&c.set, gate.actor.role, body, machines),
            None => self.check_with(&c.set, gate.actor.role, command, machines),
        };
        // The reason of the class the command took, first.
        let first = check
            .reasons
            .iter()
            .find(|r| r.starts_with(&format!("{}:", check.class)))
            .or(check.reasons.first())
            .cloned()
            .unwrap_or_default();
        match check.decision.as_str() {
            "allow" => {}
            "approve" if gate.approve => {}
            "approve" => {
                return Err(ServerError::Conflict(format!(
                    "{what} needs approval: this command is {} ({first}) — run it with --approve (`approve: true`) if you mean it",
                    check.class
                )));
            }
            _ => {
                return Err(ServerError::Forbidden(format!(
                    "{what} is denied by the command policy (version {}, role {}): {} ({first}) — change it, or ask an admin about the policy",
                    c.version, gate.actor.role, check.class
                )));
            }
        }
        Ok(Some(Checked {
            version: c.version,
            approved: check.decision == "approve",
            class: check.class,
            decision: check.decision,
            reasons: check.reasons,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_of_a_shell_are_read_others_are_not() {
        assert_eq!(script_text("echo hi"), Ok("echo hi"));
        assert!(script_text("#!/bin/bash\necho hi").is_ok());
        assert!(script_text("#!/usr/bin/env -S bash -e\necho hi").is_ok());
        let e = script_text("#!/usr/bin/env python3\nprint(1)").expect_err("python");
        assert!(e.starts_with("a python3 script"), "{e}");
    }

    #[test]
    fn expressions_read_as_run_time_values() {
        assert_eq!(
            without_expressions("echo ${{ params.x }} and ${{ steps.a.outputs.y }}"),
            "echo $HERD_EXPR and $HERD_EXPR"
        );
        assert_eq!(without_expressions("echo ${{ open"), "echo $HERD_EXPR");
    }

    #[test]
    fn policy_text_errors_name_the_path() {
        let e = parse("by_role:\n  operator:\n    rules:\n      safe: maybe\n").expect_err("bad");
        assert!(e.starts_with("by_role.operator.rules.safe: "), "{e}");
        let e =
            parse("{\"by_label\": [{\"selector\": \"role=\", \"policy\": {}}]}").expect_err("bad");
        assert!(e.starts_with("by_label[0].selector: "), "{e}");
        let e = parse("{\"defaults\": {}}").expect_err("bad");
        assert!(e.contains("defaults"), "{e}");
        assert!(
            parse("by_role:\n  operator:\n    deny_patterns: ['systemctl restart *']\n").is_ok()
        );
    }
}
