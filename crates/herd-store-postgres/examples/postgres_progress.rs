//! How many task results the PostgreSQL store persists per second through `apply_progress`,
//! in groups of 1,000 and 4,096 records (a start and an exit per task), on a fresh database
//! each, created on the server `HERD_TEST_POSTGRES` names and dropped afterwards:
//!
//! `HERD_TEST_POSTGRES=postgres://herd@127.0.0.1:5432/postgres cargo run --release -p herd-store-postgres --example postgres_progress [TASKS]`

use herd_store::Store;
use herd_store::bench::progress_rate;
use herd_store_postgres::PgStore;
use herd_store_postgres::testdb::{self, TestDatabase};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let server = testdb::server_url()?;
    for group in [1000, 4096] {
        let db = TestDatabase::create(&server).await?;
        let store = PgStore::connect(&db.url).await?;
        let r = progress_rate(&store, "bench", tasks, group).await;
        store.close().await;
        db.drop().await?;
        let r = r?;
        println!(
            "postgres: {} tasks, {} records per call: {} calls in {:.3} s = {:.0} results/s",
            r.tasks,
            r.group,
            r.calls,
            r.elapsed.as_secs_f64(),
            r.results_per_sec()
        );
    }
    Ok(())
}
