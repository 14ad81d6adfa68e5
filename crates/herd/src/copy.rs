//! `herd cp FILE… -t SELECTOR:/path`: each file is uploaded once to the server (by SHA-256,
//! continuing an interrupted upload), then a copy run has every selected machine read it
//! over its own connection; the run is followed like `herd run`'s (summary, exit code).

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use herd_api::{Blob, CopyFile, RunRequest, RunSpec, RunWithTasks};
use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::config;
use crate::run::{FollowOpts, follow, interrupts};

/// Upload attempts of one file before giving up (each continues the previous one).
const ATTEMPTS: usize = 5;

#[derive(Args)]
pub struct CpArgs {
    /// Local files to copy.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Machines and destination, SELECTOR:/absolute/path. A destination ending in `/` or an
    /// existing directory receives the files under their own names (required for several files).
    #[arg(short = 't', long = "target", required = true)]
    target: String,
    /// One JSON event per line instead of plain output.
    #[arg(long)]
    json: bool,
}

/// `SELECTOR:/path` split in two.
fn split_target(t: &str) -> Result<(String, String)> {
    let Some(i) = t.find(":/") else {
        bail!("bad target {t:?}: expected SELECTOR:/absolute/path (e.g. -t role=web:/tmp/)");
    };
    let (sel, dest) = (&t[..i], &t[i + 1..]);
    if sel.trim().is_empty() {
        bail!("bad target {t:?}: no machines before ':' — e.g. -t 'web-*:/tmp/'");
    }
    Ok((sel.to_string(), dest.to_string()))
}

/// SHA-256 of a file, as 64 lowercase hex digits. Blocking.
pub(crate) fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Uploads `path` as blob `digest` unless the server holds it; continues after a failure.
async fn upload(client: &Client, path: &Path, digest: &str, size: u64) -> Result<()> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let held: Blob = client.get(&format!("/api/v1/blobs/{digest}")).await?;
        if held.complete {
            return Ok(());
        }
        if held.size > 0 {
            eprintln!(
                "herd: continuing the upload of {} at byte {} of {size}",
                path.display(),
                held.size
            );
        }
        match client
            .put_file::<Blob>(&format!("/api/v1/blobs/{digest}"), path, held.size)
            .await
        {
            Ok(b) if b.complete => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                if e.to_string().contains("checksum mismatch") {
                    return Err(
                        e.context(format!("{} changed while it was uploaded", path.display()))
                    );
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("the server did not take the whole file")))
}

pub async fn cp(a: CpArgs) -> Result<i32> {
    let (selector, mut dest) = split_target(&a.target)?;
    if a.files.len() > 1 && !dest.ends_with('/') {
        dest.push('/');
    }
    let client = Client::from_config(&config::load()?)?;
    let mut copy = Vec::with_capacity(a.files.len());
    for path in &a.files {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read {} — check the path", path.display()))?;
        if !meta.is_file() {
            bail!(
                "cannot copy {}: not a regular file — name files, not directories",
                path.display()
            );
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("cannot copy {}: its name is not UTF-8", path.display()))?
            .to_string();
        let p = path.clone();
        let digest = tokio::task::spawn_blocking(move || file_digest(&p))
            .await?
            .with_context(|| format!("cannot read {}", path.display()))?;
        eprintln!("herd: uploading {} ({} bytes)", path.display(), meta.len());
        upload(&client, path, &digest, meta.len()).await?;
        copy.push(CopyFile {
            digest,
            size: meta.len(),
            dest: dest.clone(),
            name,
            mode: meta.permissions().mode() & 0o7777,
        });
    }
    let req = RunRequest {
        command: "herd cp".into(),
        targets: vec![selector],
        all: false,
        start_on_attach: true,
        secret_env: Default::default(),
        secret_vars: Default::default(),
        approve: false,
        spec: RunSpec {
            copy,
            ..RunSpec::default()
        },
    };
    let sigint = interrupts()?;
    let created: RunWithTasks = client.post("/api/v1/runs", &req).await?;
    let run_id = created.run.id.clone();
    let ws = client
        .websocket(&format!("/api/v1/runs/{run_id}/attach"))
        .await?;
    follow(
        ws,
        FollowOpts {
            interactive: false,
            tty: false,
            json: a.json,
            summary: true,
            announce: false,
            resume: format!("herd runs logs {run_id} -f"),
            run_id,
            server: client.base.clone(),
            timeout: client.timeout,
            group: false,
        },
        sigint,
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_path() {
        assert_eq!(
            split_target("role=web:/tmp/").unwrap(),
            ("role=web".into(), "/tmp/".into())
        );
        assert_eq!(
            split_target("web-*:/a/b").unwrap(),
            ("web-*".into(), "/a/b".into())
        );
        assert!(split_target("web-1").is_err());
        assert!(split_target(":/tmp").is_err());
        assert!(split_target("web-1:tmp").is_err());
    }
}
