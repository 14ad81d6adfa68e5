//! Throwaway databases for tests and measurements: one fresh database per use, created on
//! the PostgreSQL server that `HERD_TEST_POSTGRES` names, dropped afterwards.

use std::str::FromStr;

use herd_store::{Result, StoreError};
use rand::RngCore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::db;

/// The PostgreSQL server tests use, e.g. `postgres://herd@127.0.0.1:5432/postgres`.
pub fn server_url() -> std::result::Result<String, String> {
    match std::env::var("HERD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Err(
            "HERD_TEST_POSTGRES is not set: set it to a PostgreSQL server URL \
                  (e.g. postgres://herd@127.0.0.1:5432/postgres) or run scripts/test.sh"
                .into(),
        ),
    }
}

/// A database made for one test: `url` reaches it.
pub struct TestDatabase {
    pub url: String,
    server_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates `herd_test_<random>` on the server at `server_url`.
    pub async fn create(server_url: &str) -> Result<TestDatabase> {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let name = format!(
            "herd_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut conn = connect(server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(db)?;
        let _ = conn.close().await;
        Ok(TestDatabase {
            url: with_database(server_url, &name),
            server_url: server_url.to_string(),
            name,
        })
    }

    /// Drops the database (closing whatever is still connected to it).
    pub async fn drop(self) -> Result<()> {
        let mut conn = connect(&self.server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .map_err(db)?;
        let _ = conn.close().await;
        Ok(())
    }
}

async fn connect(url: &str) -> Result<PgConnection> {
    let opts = PgConnectOptions::from_str(url).map_err(db)?;
    PgConnection::connect_with(&opts).await.map_err(|e| {
        StoreError::Db(format!("cannot connect to the test PostgreSQL server: {e}").into())
    })
}

/// `url` with its database replaced by `name` (the query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_with_another_database() {
        let cases = [
            (
                "postgres://herd@127.0.0.1:5432/postgres",
                "postgres://herd@127.0.0.1:5432/x",
            ),
            (
                "postgres://herd:pw@h/postgres?sslmode=disable",
                "postgres://herd:pw@h/x?sslmode=disable",
            ),
            (
                "postgres://herd@127.0.0.1:5432",
                "postgres://herd@127.0.0.1:5432/x",
            ),
            (
                "postgres://h:1/?application_name=a",
                "postgres://h:1/x?application_name=a",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x"), want, "{url}");
        }
    }
}
