//! The plain-ssh baseline against the private sshd of `bench/setup-ssh.sh`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::process::Command;

pub struct Ssh {
    pub port: u16,
    pub key: PathBuf,
    /// ControlPath of the multiplexed connection (a bench temp dir).
    pub control: PathBuf,
}

impl Ssh {
    /// Fails with a one-line hint when the baseline sshd is not set up.
    pub fn check(port: u16, key: &Path, control_dir: &Path) -> Result<Ssh> {
        let hint = "run bench/setup-ssh.sh (as root) or pass --skip-ssh";
        if !key.is_file() {
            bail!(
                "ssh baseline not set up: no key at {} — {hint}",
                key.display()
            );
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            bail!("ssh baseline not set up: nothing listens on 127.0.0.1:{port} — {hint}");
        }
        Ok(Ssh {
            port,
            key: key.to_path_buf(),
            control: control_dir.join("cm-%C"),
        })
    }

    fn base(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg("/dev/null")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-i")
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// `ssh ... root@127.0.0.1 CMD` over the multiplexed connection (opened by the first call).
    pub fn muxed(&self, remote: &str) -> Command {
        let mut c = self.base();
        c.arg("-o")
            .arg("ControlMaster=auto")
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .arg("-o")
            .arg("ControlPersist=60")
            .arg("root@127.0.0.1")
            .arg(remote);
        c
    }

    /// A fresh, non-multiplexed `ssh ... root@127.0.0.1 CMD`.
    pub fn plain(&self, remote: &str) -> Command {
        let mut c = self.base();
        c.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .arg("root@127.0.0.1")
            .arg(remote);
        c
    }
}

impl Drop for Ssh {
    /// Closes the multiplexed master, if one was opened.
    fn drop(&mut self) {
        let _ = std::process::Command::new("ssh")
            .arg("-F")
            .arg("/dev/null")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .args(["-O", "exit", "root@127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
