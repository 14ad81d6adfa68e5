//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!` embeds the
//! migration files, which cargo does not otherwise watch.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
