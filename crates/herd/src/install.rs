//! `herd agent install`: the agent as a systemd service.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser};

use crate::AgentRunArgs;

const UNIT_PATH: &str = "/etc/systemd/system/herd-agent.service";
/// Where the join token goes (0600, in a 0700 directory): never into the unit, which any
/// local user may read.
const TOKEN_PATH: &str = "/etc/herd/agent-token";

/// The join token taken out of `args` (`--token V`, `--token=V`), else `HERD_JOIN_TOKEN`.
fn take_token(args: &mut Vec<String>) -> Option<String> {
    let mut token = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--token" && i + 1 < args.len() {
            token = Some(args.remove(i + 1));
            args.remove(i);
        } else if let Some(v) = args[i].strip_prefix("--token=") {
            token = Some(v.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    token
        .or_else(|| std::env::var("HERD_JOIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// Writes the token where the service reads it.
fn write_token(token: &str) -> Result<()> {
    let path = Path::new(TOKEN_PATH);
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| {
                format!(
                    "cannot create {} — run as root (sudo herd agent install …)",
                    dir.display()
                )
            })?;
    }
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()
    };
    write().with_context(|| {
        format!("cannot write {TOKEN_PATH} — run as root (sudo herd agent install …)")
    })
}

#[derive(Args)]
pub struct InstallArgs {
    /// Print the unit instead of installing it.
    #[arg(long)]
    dry_run: bool,
    /// The agent's arguments, as for `herd agent` (e.g. --server URL --token TOKEN).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Checks agent arguments as `herd agent` would take them.
#[derive(Parser)]
#[command(name = "herd agent", no_binary_name = true)]
struct AgentOnly {
    #[command(flatten)]
    run: AgentRunArgs,
}

/// One word of an `ExecStart=` line, quoted for systemd when needed.
fn unit_word(w: &str) -> String {
    let w = w.replace('%', "%%").replace('$', "$$");
    if !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return w;
    }
    format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The text of herd-agent.service running `exe agent args…`.
pub fn unit(exe: &str, args: &[String]) -> String {
    let mut exec = vec![unit_word(exe), "agent".to_string()];
    exec.extend(args.iter().map(|a| unit_word(a)));
    format!(
        "[Unit]\n\
         Description=herd agent\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=always\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exec.join(" ")
    )
}

/// Without systemd: what to do instead.
fn fallback(exe: &str, args: &[String]) -> String {
    let mut cmd = vec![exe.to_string(), "agent".to_string()];
    cmd.extend(args.iter().cloned());
    let cmd = crate::run::shell_words(&cmd);
    format!(
        "# Without systemd, start the agent at boot and restart it when it ends, e.g. a line\n\
         # in /etc/rc.local:\n\
         (while true; do {cmd}; sleep 5; done) >>/var/log/herd-agent.log 2>&1 &\n\
         # or the same command under a supervisor (runit, s6, supervisord, OpenRC).\n"
    )
}

fn systemctl(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("cannot run systemctl {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "systemctl {} failed ({status}) — see `systemctl status herd-agent` and `journalctl -u herd-agent`",
            args.join(" ")
        );
    }
    Ok(())
}

pub fn install(a: InstallArgs) -> Result<i32> {
    let mut args = a.args;
    let mut dry_run = a.dry_run;
    args.retain(|w| {
        let flag = w == "--dry-run";
        dry_run |= flag;
        !flag
    });
    if let Err(e) = AgentOnly::try_parse_from(&args) {
        let first = e.to_string();
        let first = first
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        bail!(
            "bad agent arguments: {first} — pass them as to `herd agent`, e.g. herd agent install --server https://HOST:7700 --token TOKEN"
        );
    }
    if !args
        .iter()
        .any(|w| w == "--server" || w.starts_with("--server="))
        && std::env::var_os("HERD_SERVER").is_none()
    {
        bail!(
            "no server given — pass --server https://HOST:7700 (and --token TOKEN the first time)"
        );
    }
    let token = take_token(&mut args);
    if token.is_some() {
        args.extend(["--token-file".to_string(), TOKEN_PATH.to_string()]);
    }
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let exe = exe.to_string_lossy().into_owned();
    let text = unit(&exe, &args);
    if dry_run {
        print!("# {UNIT_PATH}\n{text}");
        if token.is_some() {
            println!("# {TOKEN_PATH} (0600): the join token");
        }
        return Ok(0);
    }
    if let Some(t) = &token {
        write_token(t)?;
    }
    if !Path::new("/run/systemd/system").exists() {
        print!("# {UNIT_PATH}\n{text}\n{}", fallback(&exe, &args));
        bail!(
            "systemd is not running here (no /run/systemd/system) — start the agent as shown above instead"
        );
    }
    std::fs::write(UNIT_PATH, &text).with_context(|| {
        format!("cannot write {UNIT_PATH} — run as root (sudo herd agent install …)")
    })?;
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", "herd-agent.service"])?;
    println!("herd-agent.service installed, enabled and started ({UNIT_PATH})");
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unit_words_are_quoted_for_systemd() {
        assert_eq!(unit_word("--server"), "--server");
        assert_eq!(unit_word("a b"), "\"a b\"");
        assert_eq!(unit_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(unit_word("50%$X"), "50%%$$X");
        assert_eq!(unit_word(""), "\"\"");
    }

    #[test]
    fn the_token_is_taken_out_of_the_arguments() {
        let mut args: Vec<String> = ["--server", "u", "--token", "hj_1", "-l", "a=b"]
            .map(String::from)
            .to_vec();
        assert_eq!(take_token(&mut args).as_deref(), Some("hj_1"));
        assert_eq!(args, ["--server", "u", "-l", "a=b"]);
        let mut args: Vec<String> = ["--token=hj_2", "--server", "u"].map(String::from).to_vec();
        assert_eq!(take_token(&mut args).as_deref(), Some("hj_2"));
        assert_eq!(args, ["--server", "u"]);
    }

    #[test]
    fn the_unit_runs_the_agent_with_its_arguments() {
        let args: Vec<String> = ["--server", "https://h:7700", "-l", "role=web"]
            .map(String::from)
            .to_vec();
        let u = unit("/usr/bin/herd", &args);
        assert!(u.contains("ExecStart=/usr/bin/herd agent --server https://h:7700 -l role=web\n"));
        assert!(u.contains("Restart=always\n"));
        assert!(u.contains("WantedBy=multi-user.target\n"));
    }
}
