//! Client configuration: `$HERD_CONFIG`, else `~/.config/herd/config.toml`; `HERD_SERVER`
//! and `HERD_API_KEY` (and flags) override what the file says.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub api_key: Option<String>,
    /// Pin of the server's CA, for https servers.
    pub ca_sha256: Option<String>,
}

pub fn config_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HERD_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .context("HOME is not set — set HERD_CONFIG to a config file path")?;
    Ok(PathBuf::from(home).join(".config/herd/config.toml"))
}

pub fn load() -> Result<ClientConfig> {
    let path = config_path()?;
    let mut cfg = match std::fs::read_to_string(&path) {
        // toml's own message spans several lines (a source snippet); keep it to one.
        Ok(s) => toml::from_str(&s).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |r| s[..r.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "config file {} is not valid TOML (line {line}: {}) — fix or remove it",
                path.display(),
                e.message().trim().replace('\n', " ")
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClientConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Some(s) = std::env::var("HERD_SERVER").ok().filter(|s| !s.is_empty()) {
        cfg.server = Some(s);
    }
    if let Some(k) = std::env::var("HERD_API_KEY").ok().filter(|s| !s.is_empty()) {
        cfg.api_key = Some(k);
    }
    if let Some(p) = std::env::var("HERD_CA_SHA256")
        .ok()
        .filter(|s| !s.is_empty())
    {
        cfg.ca_sha256 = Some(p);
    }
    Ok(cfg)
}

pub fn save(cfg: &ClientConfig) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {} — set HERD_CONFIG to a writable path",
                dir.display()
            )
        })?;
    }
    let body = toml::to_string(cfg)?;
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The server URL and key to use, or a message saying how to get them.
pub fn resolve(cfg: &ClientConfig) -> Result<(String, String)> {
    let Some(server) = cfg.server.clone() else {
        bail!("no server configured — run `herd up`, or set HERD_SERVER and HERD_API_KEY");
    };
    let Some(key) = cfg.api_key.clone() else {
        bail!(
            "no API key configured — set HERD_API_KEY (or run `herd up`, which writes one to the config)"
        );
    };
    Ok((server.trim_end_matches('/').to_string(), key))
}
