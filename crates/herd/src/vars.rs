//! `herd vars`: variables and secrets on the server. A secret's value is read from standard
//! input (never from the command line, which every local user can read) and never shown.

use std::io::Read as _;

use anyhow::{Result, bail};
use clap::Subcommand;
use herd_api::{SetVar, Var};
use herd_core::Escaped;

use crate::cmd::{client, encode, out, outln, print_json};
use crate::table::{render, time};

#[derive(Subcommand)]
pub enum VarsCmd {
    /// Set a variable: `herd vars set region eu`; a secret's value comes from standard input
    /// (`printf %s "$PW" | herd vars set db_pw --secret`).
    Set {
        key: String,
        /// The value (not with --secret: read from standard input instead).
        value: Option<String>,
        /// Keep it as a secret: encrypted at rest, shown as ***, never answered.
        #[arg(long)]
        secret: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print a variable's value (a secret prints ***).
    Get {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// List variables (secrets as ***): global ones, or with `--scope workflow:NAME` (or
    /// `job:NAME`) what that workflow's steps set with `herd helper var set`.
    Ls {
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a variable.
    Rm {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

/// What a person sees of a value.
fn shown(v: &Var) -> String {
    match &v.value {
        Some(value) if !v.secret => value.clone(),
        _ => "***".into(),
    }
}

/// A secret's value from standard input: all of it, less one trailing newline.
fn value_from_stdin(key: &str) -> Result<String> {
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).map_err(|e| {
        anyhow::anyhow!("cannot read the value of {key} from standard input: {e} — pipe it in, e.g. `printf %s \"$VALUE\" | herd vars set {key} --secret`")
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!(
            "no value for {key} on standard input — pipe it in, e.g. `printf %s \"$VALUE\" | herd vars set {key} --secret`"
        );
    }
    Ok(value)
}

pub async fn vars(cmd: VarsCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        VarsCmd::Set {
            key,
            value,
            secret,
            json,
        } => {
            let value = match (value, secret) {
                (Some(_), true) => bail!(
                    "a secret's value is not taken from the command line (other users see it in `ps`) — pipe it in: `printf %s \"$VALUE\" | herd vars set {key} --secret`"
                ),
                (Some(v), false) => v,
                (None, true) => value_from_stdin(&key)?,
                (None, false) => bail!(
                    "no value for {key} — `herd vars set {key} VALUE`, or `--secret` with the value on standard input"
                ),
            };
            let v: Var = c
                .put(
                    &format!("/api/v1/vars/{}", encode(&key)),
                    &SetVar { value, secret },
                )
                .await?;
            if json {
                return print_json(&v);
            }
            outln!(
                "set {}{}",
                Escaped(&v.key),
                if v.secret { " (secret)" } else { "" }
            );
        }
        VarsCmd::Get { key, json } => {
            let v: Var = c.get(&format!("/api/v1/vars/{}", encode(&key))).await?;
            if json {
                return print_json(&v);
            }
            outln!("{}", Escaped(&shown(&v)));
        }
        VarsCmd::Ls { scope, json } => {
            let path = match &scope {
                Some(s) => format!("/api/v1/vars?scope={}", encode(s)),
                None => "/api/v1/vars".to_string(),
            };
            let vars: Vec<Var> = c.get(&path).await?;
            if json {
                return print_json(&vars);
            }
            let rows: Vec<Vec<String>> = vars
                .iter()
                .map(|v| {
                    vec![
                        v.key.clone(),
                        shown(v),
                        if v.secret { "secret" } else { "" }.into(),
                        time(Some(v.updated_at)),
                        v.updated_by.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(&["KEY", "VALUE", "KIND", "UPDATED", "BY"], &rows)
            );
        }
        VarsCmd::Rm { key, json } => {
            let v: Var = c.delete(&format!("/api/v1/vars/{}", encode(&key))).await?;
            if json {
                return print_json(&v);
            }
            outln!("deleted {}", Escaped(&v.key));
        }
    }
    Ok(0)
}
