//! `herd up`: the embedded default. One process runs the server on SQLite and a local agent,
//! and writes the client config so every other command works from another terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::UpArgs;
use crate::config::{self, ClientConfig};

fn default_data_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set — pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/herd"))
}

pub async fn up(a: UpArgs) -> Result<i32> {
    crate::init_tracing("warn");
    let data_dir = match a.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let mut cfg = herd_server::ServerConfig::new(a.listen, data_dir.clone());
    cfg.database = a.database;
    cfg.retention = a.retention;
    cfg.retention_size = a.retention_size;
    cfg.retention_interval = a.retention_interval;
    cfg.metrics_auth = a.metrics_auth;
    cfg.web_dir = a.web_dir.clone();
    let name = a.name.clone().unwrap_or_else(crate::hostname);
    // Workflow steps that name no machines run on this process's own agent.
    cfg.local_agent = Some(name.clone());
    let running = herd_server::start(cfg).await?;

    // A key for the client config: the admin key on first start, else the configured one if
    // this server still accepts it, else a new one.
    let existing = config::load().unwrap_or_default();
    let key = match running.admin_key.clone() {
        Some(k) => k,
        None => match existing.api_key.clone() {
            Some(k)
                if existing.server.as_deref() == Some(running.url.as_str())
                    && running.accepts_api_key(&k).await =>
            {
                k
            }
            _ => running.create_api_key("herd up").await?,
        },
    };
    let path = config::save(&ClientConfig {
        server: Some(running.url.clone()),
        api_key: Some(key.clone()),
        ca_sha256: running.ca_fingerprint.clone(),
    })?;

    let state_dir = data_dir.join("agent");
    let has_identity = state_dir.join("identity.json").exists();
    let token = if has_identity {
        None
    } else {
        Some(
            running
                .create_join_token(Duration::from_secs(300), 1)
                .await?,
        )
    };
    let agent_cfg = herd_agent::AgentConfig {
        server: running.url.clone(),
        token,
        name_given: a.name.is_some(),
        name,
        labels: Default::default(),
        labels_given: false,
        state_dir,
        ca_sha256: running.ca_fingerprint.clone(),
        supervise: true,
        metrics_disk: None,
    };
    let agent = tokio::spawn(herd_agent::run(agent_cfg));

    let mut said = format!(
        "herd is up\n  API        {}\n  dashboard  {}/   (log in with the API key)\n",
        running.url, running.url
    );
    if running.admin_key.is_some() {
        said += &format!("  admin key  {key}   (shown once)\n");
    }
    said += &format!(
        "  config     {}\n  data       {}\n  database   {}\ntry: herd run --all -- uname -a\n",
        path.display(),
        data_dir.display(),
        running.database
    );
    crate::say(&said);

    let res = tokio::select! {
        r = agent => match r {
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("local agent stopped")),
            Ok(Ok(())) => Ok(0),
            Err(e) => Err(anyhow::Error::from(e).context("local agent stopped")),
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("herd: stopping");
            Ok(0)
        }
    };
    running.shutdown().await;
    res
}
