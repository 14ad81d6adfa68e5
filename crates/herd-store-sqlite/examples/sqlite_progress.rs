//! How many task results the SQLite store persists per second through `apply_progress`,
//! in groups of 1,000 and 4,096 records (a start and an exit per task), on a fresh database
//! file each:
//!
//! `cargo run --release -p herd-store-sqlite --example sqlite_progress [TASKS]` (10,000 by default)

use herd_store::Store;
use herd_store::bench::progress_rate;
use herd_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    for group in [1000, 4096] {
        let dir = tempfile::tempdir_in(std::env::temp_dir())?;
        let store = SqliteStore::open(&dir.path().join("herd.db")).await?;
        let r = progress_rate(&store, "bench", tasks, group).await?;
        println!(
            "sqlite: {} tasks, {} records per call: {} calls in {:.3} s = {:.0} results/s",
            r.tasks,
            r.group,
            r.calls,
            r.elapsed.as_secs_f64(),
            r.results_per_sec()
        );
        store.close().await;
    }
    Ok(())
}
