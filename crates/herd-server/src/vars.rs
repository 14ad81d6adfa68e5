//! Variables and secrets (`herd vars`): values by scope and key, each change audited (never
//! with its value). A secret is sealed before the store sees it: XChaCha20-Poly1305 under the
//! server's key (`DATA_DIR/secrets.key`, 32 random bytes made at first start, 0600), with a
//! random nonce per value and the variable's scope and key as associated data, so a sealed
//! value moved to another variable does not open. A secret's value is never answered.
//!
//! **Invariant:** no secret's value reaches the store, the audit log or an API answer in
//! clear.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use herd_api::{SetVar, Var};
use herd_store::{AuditEntry, Store, VarRow, now_ms};
use serde_json::json;

use crate::error::{Result, ServerError};
use crate::fleet::Actor;

/// The one scope so far.
pub const GLOBAL: &str = "global";
/// What a sealed value starts with (the format's version).
const SEALED: &str = "xc1:";

/// The server's key for secrets.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// Reads the key at `path`, or makes it (0600) if there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<Sealer> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let key = match std::fs::read(path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k: [u8; 32] = rand::random();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(&k)?;
                f.sync_all()?;
                k.to_vec()
            }
            Err(e) => return Err(e),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, not a 32-byte key",
                    path.display(),
                    key.len()
                ),
            )
        })?;
        Ok(Sealer { cipher })
    }

    fn aad(scope: &str, key: &str) -> Vec<u8> {
        format!("{scope}\0{key}").into_bytes()
    }

    /// `value` sealed for the variable `scope`/`key`.
    pub fn seal(&self, scope: &str, key: &str, value: &str) -> Result<String> {
        let nonce: [u8; 24] = rand::random();
        let aad = Self::aad(scope, key);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| ServerError::Internal("cannot seal a secret".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        ))
    }

    /// The value of a secret sealed for `scope`/`key` (for what runs with it; never for an
    /// API answer).
    pub fn open(&self, scope: &str, key: &str, sealed: &str) -> Result<String> {
        let bad = || {
            ServerError::Internal(format!(
                "secret {scope}/{key} does not open with this server's key (DATA_DIR/secrets.key) — every server of a database needs the same key file"
            ))
        };
        let b64 = sealed.strip_prefix(SEALED).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| bad())?;
        if bytes.len() < 24 {
            return Err(bad());
        }
        let (nonce, ct) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| bad())?;
        let aad = Self::aad(scope, key);
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

/// Whether `key` is a variable's name: 1 to 128 of `[A-Za-z0-9_.-]`.
pub(crate) fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub struct VarService {
    store: std::sync::Arc<dyn Store>,
    sealer: Sealer,
}

/// A stored variable as the API answers it: a secret without its value.
pub fn answer(v: VarRow) -> Var {
    Var {
        value: (!v.secret).then_some(v.value),
        key: v.key,
        scope: v.scope,
        secret: v.secret,
        updated_at: v.updated_at,
        updated_by: v.updated_by,
    }
}

impl VarService {
    pub fn new(store: std::sync::Arc<dyn Store>, sealer: Sealer) -> VarService {
        VarService { store, sealer }
    }

    fn check_key(key: &str) -> Result<()> {
        if valid_key(key) {
            return Ok(());
        }
        Err(ServerError::BadRequest(format!(
            "variable name {:?} is not valid: use 1-128 letters, digits, '_', '.' or '-'",
            herd_core::escape_controls(key)
        )))
    }

    pub async fn set(&self, actor: &Actor, key: &str, req: SetVar) -> Result<Var> {
        Self::check_key(key)?;
        if req.value.len() > SetVar::MAX_VALUE {
            return Err(ServerError::BadRequest(format!(
                "the value is {} bytes; at most {} — keep large data in a file",
                req.value.len(),
                SetVar::MAX_VALUE
            )));
        }
        let value = if req.secret {
            self.sealer.seal(GLOBAL, key, &req.value)?
        } else {
            req.value
        };
        let row = VarRow {
            scope: GLOBAL.into(),
            key: key.into(),
            value,
            secret: req.secret,
            updated_at: now_ms(),
            updated_by: actor.name.clone(),
        };
        let audit = AuditEntry::new(
            &actor.name,
            "var.set",
            format!("var:{GLOBAL}/{key}"),
            json!({"secret": req.secret}),
        );
        self.store.set_var(&row, &audit).await?;
        Ok(answer(row))
    }

    pub async fn get(&self, key: &str) -> Result<Var> {
        Self::check_key(key)?;
        self.store
            .var(GLOBAL, key)
            .await?
            .map(answer)
            .ok_or_else(|| not_found(key))
    }

    /// The variables of `scope` (`global` when `None`; `job:NAME`, `workflow:NAME`).
    pub async fn list(&self, scope: Option<&str>) -> Result<Vec<Var>> {
        let scope = scope.unwrap_or(GLOBAL);
        let ok = scope == GLOBAL
            || scope.split_once(':').is_some_and(|(k, n)| {
                matches!(k, "job" | "workflow") && crate::flows::valid_name(n)
            });
        if !ok {
            return Err(ServerError::BadRequest(format!(
                "scope {:?} is not one: give global, job:NAME or workflow:NAME",
                herd_core::escape_controls(scope)
            )));
        }
        Ok(self
            .store
            .vars(scope)
            .await?
            .into_iter()
            .map(answer)
            .collect())
    }

    pub async fn delete(&self, actor: &Actor, key: &str) -> Result<Var> {
        Self::check_key(key)?;
        let audit = AuditEntry::new(
            &actor.name,
            "var.rm",
            format!("var:{GLOBAL}/{key}"),
            json!({}),
        );
        self.store
            .delete_var(GLOBAL, key, &audit)
            .await?
            .map(answer)
            .ok_or_else(|| not_found(key))
    }
}

impl VarService {
    /// Seals a value that is not a variable (a workflow run's secret parameter), under
    /// `scope` and `key` as associated data.
    pub fn seal_value(&self, scope: &str, key: &str, value: &str) -> Result<String> {
        self.sealer.seal(scope, key, value)
    }

    /// Opens what [`VarService::seal_value`] sealed.
    pub fn open_value(&self, scope: &str, key: &str, sealed: &str) -> Result<String> {
        self.sealer.open(scope, key, sealed)
    }

    /// The variables the steps of job or workflow `name` read: global ones, then its own
    /// (`job:NAME` or `workflow:NAME`, set by `herd helper var set`) over them; secrets left
    /// out.
    pub async fn for_flow(
        &self,
        kind: herd_core::DefKind,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        for scope in [GLOBAL.to_string(), format!("{kind}:{name}")] {
            for v in self.store.vars(&scope).await? {
                if !v.secret {
                    out.insert(v.key, v.value);
                }
            }
        }
        Ok(out)
    }

    /// A variable's value (a secret's opened) for what runs with it, never for an answer.
    pub async fn reveal(&self, key: &str) -> Result<String> {
        Self::check_key(key)?;
        let v = self.store.var(GLOBAL, key).await?.ok_or_else(|| {
            ServerError::BadRequest(format!(
                "no variable {key:?} for secret_vars — `herd vars ls` lists them, `herd vars set {key} --secret` makes it"
            ))
        })?;
        if v.secret {
            self.sealer.open(&v.scope, &v.key, &v.value)
        } else {
            Ok(v.value)
        }
    }
}

fn not_found(key: &str) -> ServerError {
    ServerError::NotFound(format!(
        "no variable {:?} — `herd vars ls` lists them",
        herd_core::escape_controls(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_variable_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let s = Sealer::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = s.seal("global", "db_pw", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            s.seal("global", "db_pw", "hunter2").unwrap(),
            "a fresh nonce"
        );
        assert_eq!(s.open("global", "db_pw", &sealed).unwrap(), "hunter2");
        // Moved to another variable, it does not open.
        assert!(s.open("global", "other", &sealed).is_err());
        // The same key file again (a restart) opens it; another key does not.
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(again.open("global", "db_pw", &sealed).unwrap(), "hunter2");
        let other = Sealer::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("global", "db_pw", &sealed).is_err());
        // A damaged key file is refused with what is wrong.
        std::fs::write(dir.path().join("short.key"), b"short").unwrap();
        let e = Sealer::load_or_create(&dir.path().join("short.key"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a 32-byte key"), "{e}");
    }

    #[test]
    fn variable_names() {
        for ok in ["a", "DB_PASSWORD", "app.region", "x-1"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "\u{1b}[2J", &"k".repeat(129)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
