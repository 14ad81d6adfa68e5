//! Command policy decisions per second (classify + decide) over the published tables:
//! `cargo run --release -p herd-policy --example policy_rate [SECONDS]`.

use std::time::{Duration, Instant};

use herd_policy::{DANGEROUS_TSV, EVERYDAY_TSV, Policy, classify, decide, table_commands};

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let mut commands = table_commands(DANGEROUS_TSV);
    commands.extend(table_commands(EVERYDAY_TSV));
    let policy = Policy::default();
    let until = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut decisions = 0u64;
    let mut gated = 0u64;
    while start.elapsed() < until {
        for cmd in &commands {
            let d = decide(&policy, &classify(cmd));
            gated += u64::from(d != herd_policy::Decision::Allow);
            decisions += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{decisions} decisions over {} commands in {elapsed:.2} s: {:.0} decisions/s on one thread ({:.1} µs each; {gated} gated)",
        commands.len(),
        decisions as f64 / elapsed,
        elapsed * 1e6 / decisions as f64
    );
}
