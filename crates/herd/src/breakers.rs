//! `herd breakers`: the circuit breakers of the hosts the server calls (workflow `http` and
//! `notify` steps), as the server holds them in memory.

use anyhow::Result;
use clap::Subcommand;
use herd_api::Breaker;

use crate::cmd::{client, out, print_json};
use crate::table::{render, time};

#[derive(Subcommand)]
pub enum BreakersCmd {
    /// List every host the server has called since it started, with its breaker.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

pub async fn breakers(cmd: BreakersCmd) -> Result<i32> {
    let c = client()?;
    match cmd {
        BreakersCmd::Ls { json } => {
            let breakers: Vec<Breaker> = c.get("/api/v1/breakers").await?;
            if json {
                return print_json(&breakers);
            }
            let rows: Vec<Vec<String>> = breakers
                .iter()
                .map(|b| {
                    vec![
                        b.host.clone(),
                        b.state.as_str().to_string(),
                        b.consecutive_failures.to_string(),
                        time(b.opened_at_ms),
                        time(b.next_probe_ms),
                    ]
                })
                .collect();
            out!(
                "{}",
                render(
                    &["HOST", "STATE", "FAILURES", "OPENED", "NEXT PROBE"],
                    &rows
                )
            );
        }
    }
    Ok(0)
}
