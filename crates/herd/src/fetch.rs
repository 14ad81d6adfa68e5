//! `herd fetch -t SELECTOR /remote/path LOCAL_DIR`: every selected machine sends its file to
//! the server over its own connection (a fetch run, followed like `herd run`'s), then the CLI
//! downloads each machine's copy to `LOCAL_DIR/<machine>/<file name>`: through
//! `<name>.herd-part` (an interrupted download continues from its length), its SHA-256
//! checked against the machine's, its mode kept.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::StreamExt as _;
use herd_api::{
    FETCHED_MODE, FETCHED_SHA256, FETCHED_SIZE, FetchFile, RunRequest, RunSpec, RunWithTasks,
    TaskState,
};
use tokio::io::AsyncWriteExt as _;

use crate::client::Client;
use crate::config;
use crate::run::{FollowOpts, follow, interrupts};

/// Download attempts of one machine's file before giving up (each continues the previous).
const ATTEMPTS: usize = 5;
/// Machines' files downloaded at once.
const PARALLEL: usize = 4;

#[derive(Args)]
pub struct FetchArgs {
    /// Machines to fetch from (selectors, as for `herd run`).
    #[arg(short = 't', long = "target", required = true)]
    target: Vec<String>,
    /// The file on the machines (an absolute path).
    remote: String,
    /// Local directory; each machine's copy goes to LOCAL_DIR/<machine>/<file name>.
    local_dir: PathBuf,
    /// One JSON event per line instead of plain output.
    #[arg(long)]
    json: bool,
}

pub async fn fetch(a: FetchArgs) -> Result<i32> {
    let spec = FetchFile {
        path: a.remote.clone(),
    };
    spec.check().map_err(|e| anyhow!("{e}"))?;
    let name = spec.basename().to_string();
    std::fs::create_dir_all(&a.local_dir).with_context(|| {
        format!(
            "cannot create {} — choose a directory you may write",
            a.local_dir.display()
        )
    })?;
    let client = Client::from_config(&config::load()?)?;
    let req = RunRequest {
        command: format!("herd fetch {}", a.remote),
        targets: a.target.clone(),
        all: false,
        start_on_attach: true,
        secret_env: Default::default(),
        secret_vars: Default::default(),
        approve: false,
        spec: RunSpec {
            fetch: Some(spec),
            ..RunSpec::default()
        },
    };
    let sigint = interrupts()?;
    let created: RunWithTasks = client.post("/api/v1/runs", &req).await?;
    let run_id = created.run.id.clone();
    let ws = client
        .websocket(&format!("/api/v1/runs/{run_id}/attach"))
        .await?;
    let code = follow(
        ws,
        FollowOpts {
            interactive: false,
            tty: false,
            json: a.json,
            summary: true,
            announce: false,
            resume: format!("herd runs logs {run_id} -f"),
            run_id: run_id.clone(),
            server: client.base.clone(),
            timeout: client.timeout,
            group: false,
        },
        sigint,
    )
    .await?;
    let done: RunWithTasks = client.get(&format!("/api/v1/runs/{run_id}")).await?;
    let fetched: Vec<_> = done
        .tasks
        .into_iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .collect();
    let results = futures::stream::iter(fetched.into_iter().map(|t| {
        let (client, dir, name) = (&client, a.local_dir.join(&t.agent_name), name.clone());
        async move {
            let r = download(client, &t.id, &t.agent_name, &dir, &name).await;
            (t.agent_name, r)
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect::<Vec<_>>()
    .await;
    let mut failed = false;
    for (machine, r) in results {
        match r {
            Ok((path, size)) => {
                if !a.json {
                    eprintln!(
                        "herd: {}: {} ({size} bytes)",
                        herd_core::Escaped(&machine),
                        path.display()
                    );
                }
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "herd: {}: cannot download its file: {}",
                    herd_core::Escaped(&machine),
                    herd_core::Escaped(&format!("{e:#}"))
                );
            }
        }
    }
    Ok(if code == 0 && failed { 1 } else { code })
}

/// What the server said of the whole file.
struct Whole {
    digest: String,
    size: u64,
    mode: u32,
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Result<&'a str> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            anyhow!(
                "the server's answer has no {name} header — is it the same version as this CLI?"
            )
        })
}

fn whole(resp: &reqwest::Response) -> Result<Whole> {
    let bad =
        || anyhow!("the server described the file oddly — is it the same version as this CLI?");
    Ok(Whole {
        digest: header(resp, FETCHED_SHA256)?.to_string(),
        size: header(resp, FETCHED_SIZE)?.parse().map_err(|_| bad())?,
        mode: u32::from_str_radix(header(resp, FETCHED_MODE)?, 8).map_err(|_| bad())?,
    })
}

/// Downloads task `task`'s file to `dir/name`; its path and length.
async fn download(
    client: &Client,
    task: &str,
    machine: &str,
    dir: &Path,
    name: &str,
) -> Result<(PathBuf, u64)> {
    if machine.is_empty() || machine.contains('/') || machine == "." || machine == ".." {
        bail!("the machine's name {machine:?} cannot name a directory");
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} — check its parent", dir.display()))?;
    let dest = dir.join(name);
    let part = dir.join(format!("{name}.herd-part"));
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match attempt(client, task, &dest, &part).await {
            Ok(done) => return Ok(done),
            Err(e) if e.downcast_ref::<Local>().is_some() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("the download did not complete")))
}

/// A failure on this side (disk, checksum) that another attempt would not fix.
#[derive(Debug)]
struct Local(String);

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Local {}

fn local(what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(Local(format!("cannot {what} {}: {e}", path.display())))
}

/// One download: continues `part` from its length, checks the whole file, renames it.
async fn attempt(client: &Client, task: &str, dest: &Path, part: &Path) -> Result<(PathBuf, u64)> {
    let have = std::fs::metadata(part).map_or(0, |m| m.len());
    let mut resp = client
        .open(&format!("/api/v1/tasks/{task}/fetched?offset={have}"))
        .await;
    if have > 0
        && resp
            .as_ref()
            .is_err_and(|e| e.to_string().contains("past the end"))
    {
        // A part longer than the file is from another content: start over.
        std::fs::remove_file(part).map_err(|e| local("remove", part, e))?;
        return Box::pin(attempt(client, task, dest, part)).await;
    }
    let resp = resp.as_mut().map_err(|e| anyhow!("{e:#}"))?;
    let w = whole(resp)?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(part)
        .await
        .map_err(|e| local("write", part, e))?;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => file
                .write_all(&chunk)
                .await
                .map_err(|e| local("write", part, e))?,
            Ok(None) => break,
            Err(e) => {
                let _ = file.flush().await;
                return Err(client.broken(e));
            }
        }
    }
    file.flush().await.map_err(|e| local("write", part, e))?;
    file.sync_all().await.map_err(|e| local("write", part, e))?;
    drop(file);
    let p = part.to_path_buf();
    let got = tokio::task::spawn_blocking(move || crate::copy::file_digest(&p))
        .await?
        .map_err(|e| local("read", part, e))?;
    if got != w.digest {
        let _ = std::fs::remove_file(part);
        if have > 0 {
            // The part held another content (an older, interrupted fetch): start over.
            return Err(anyhow!(
                "the partial download {} was of another content; starting over",
                part.display()
            ));
        }
        return Err(anyhow::Error::new(Local(format!(
            "checksum mismatch (SHA-256 {got}, the machine's {}) — fetch it again",
            w.digest
        ))));
    }
    std::fs::set_permissions(part, std::fs::Permissions::from_mode(w.mode))
        .map_err(|e| local("set the mode of", part, e))?;
    std::fs::rename(part, dest).map_err(|e| local("write", dest, e))?;
    Ok((dest.to_path_buf(), w.size))
}
