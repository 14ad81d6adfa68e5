//! A real PostgreSQL for tests, from the machine's own binaries: one throwaway cluster per
//! test process (or the server `HERD_TEST_POSTGRES` names), handing out a fresh empty
//! database per caller. Databases are created with the `psql` client, so the testkit needs
//! no SQL driver.
//!
//! The cluster lives in a temp dir, listens on a free loopback port (its socket in the temp
//! dir too), trusts local connections of the user `herd` (no password), and runs without
//! fsync. It stops, and its dir is deleted, when the process that started it ends, however it
//! ends (see [`WATCHDOG`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{self, Error, Result};
use crate::process::alive;

/// The database superuser of a cluster started here.
const SUPERUSER: &str = "herd";
/// How long a cluster may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `postgres` (its arguments: `$2 …`) with its output in `$1/postgres.log`, prints its
/// pid, then waits for EOF on stdin, stops it (fast shutdown) and deletes `$1`.
///
/// stdin is a pipe whose only writer is the process that started the cluster, kept open for
/// that process's whole life and closed by the kernel when it ends, however it ends (return,
/// panic, SIGKILL). So the cluster cannot outlive its tests. PR_SET_PDEATHSIG would not do:
/// it fires when the *thread* that started the child ends (a test's thread, while other tests
/// still use the cluster), it is reset when postgres switches to an unprivileged user, and it
/// leaves the temp dir behind. `pg_ctl` is not used since it detaches the server from its
/// parent. The watchdog runs in a process group of its own, so a terminal's Ctrl-C reaches
/// only the test process, whose end then stops the cluster the same way.
const WATCHDOG: &str = r#"dir=$1; shift
"$@" >>"$dir/postgres.log" 2>&1 &
pid=$!
echo "$pid"
while read -r _; do :; done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

/// A PostgreSQL server the tests can create databases in.
pub struct Postgres {
    /// The URL of the server's `postgres` database, for creating databases.
    admin_url: String,
    /// `postgres://user@host:port` of the server.
    base: String,
    /// Query parameters of `HERD_TEST_POSTGRES`, kept on every database URL.
    query: String,
    psql: PathBuf,
    cluster: Option<Cluster>,
}

/// A cluster started here, and its watchdog.
struct Cluster {
    dir: PathBuf,
    pid: u32,
    watchdog: Child,
    /// The watchdog's stdin: closing it stops the cluster.
    stop: Option<ChildStdin>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.watchdog.wait();
    }
}

static SHARED: OnceLock<std::result::Result<Postgres, String>> = OnceLock::new();

impl Postgres {
    /// The server shared by this process's tests: the one `HERD_TEST_POSTGRES` names (a
    /// server URL, e.g. `postgres://herd@127.0.0.1:5432`), else a cluster started at the first
    /// call and stopped when the process ends.
    pub fn shared() -> Result<&'static Postgres> {
        let r = SHARED.get_or_init(|| {
            let pg = match std::env::var("HERD_TEST_POSTGRES") {
                Ok(url) if !url.is_empty() => Postgres::connect(&url),
                _ => Postgres::start(),
            };
            pg.map_err(|e| e.to_string())
        });
        r.as_ref().map_err(|e| Error::Unexpected(e.clone()))
    }

    /// Starts a cluster of its own, stopped (and its files deleted) when the returned value
    /// drops or this process ends.
    pub fn start() -> Result<Postgres> {
        Postgres::start_cluster(Durability::Tests)
    }

    /// Like [`Postgres::start`], with PostgreSQL's own durability settings (every commit
    /// flushed to disk): for measurements, not for tests.
    pub fn start_durable() -> Result<Postgres> {
        Postgres::start_cluster(Durability::Default)
    }

    fn start_cluster(durability: Durability) -> Result<Postgres> {
        let bins = Binaries::find()?;
        let mut last = None;
        // The port is picked free, then bound by postgres: another process may take it in
        // between. Try again with a new one then.
        for _ in 0..3 {
            match start_cluster(&bins, durability)? {
                Started::Ready(pg) => return Ok(pg),
                Started::PortTaken(log) => last = Some(log),
            }
        }
        Err(Error::Unexpected(format!(
            "PostgreSQL could not bind a free port three times; its log:\n{}",
            last.unwrap_or_default()
        )))
    }

    /// A server that already runs, at `url` (`postgres://user[:password]@host:port[/db][?…]`).
    pub fn connect(url: &str) -> Result<Postgres> {
        let psql = Binaries::find_psql()?;
        let (base, query) = split_url(url)?;
        let pg = Postgres {
            admin_url: format!("{base}/postgres{query}"),
            base,
            query,
            psql,
            cluster: None,
        };
        pg.run_sql(&pg.admin_url, "select 1")
            .map_err(|e| Error::Unexpected(format!("HERD_TEST_POSTGRES={url}: {e}")))?;
        Ok(pg)
    }

    /// Creates a fresh empty database, `herd_test_<random>`; its URL.
    pub fn create_database(&self) -> Result<String> {
        let name = format!("herd_test_{:016x}", rand::random::<u64>());
        self.run_sql(&self.admin_url, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(format!("{}/{name}{}", self.base, self.query))
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> &str {
        &self.admin_url
    }

    /// `psql` for `url`: no psqlrc, stop at the first error, quiet, unaligned tuples only.
    pub fn psql(&self, url: &str) -> Command {
        let mut c = Command::new(&self.psql);
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGSERVICE",
            "PGOPTIONS",
        ] {
            c.env_remove(var);
        }
        c.env("PGCONNECT_TIMEOUT", "5")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
            .stdin(Stdio::null());
        c
    }

    /// Runs `sql` on `url` with psql; what it printed.
    pub fn run_sql(&self, url: &str, sql: &str) -> Result<String> {
        let out = self
            .psql(url)
            .args(["-c", sql])
            .output()
            .map_err(error::spawn(format!("{}", self.psql.display())))?;
        if !out.status.success() {
            return Err(Error::Unexpected(format!(
                "psql {url} -c {sql:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The cluster's directory and postmaster pid, when it was started here.
    pub fn cluster(&self) -> Option<(&Path, u32)> {
        self.cluster.as_ref().map(|c| (c.dir.as_path(), c.pid))
    }
}

/// `postgres://user@host:port/db?query` → (`postgres://user@host:port`, `?query`).
fn split_url(url: &str) -> Result<(String, String)> {
    let bad = || {
        Error::Unexpected(format!(
            "{url:?} is not a PostgreSQL URL (postgres://user@host:port)"
        ))
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(bad)?;
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((format!("postgres://{authority}"), query))
}

/// The PostgreSQL programs used: the server's and its client.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

impl Binaries {
    /// `/usr/lib/postgresql/<newest>/bin`, else the directory `initdb` on PATH really is in
    /// (links such as /usr/local/bin/initdb resolved).
    fn find() -> Result<Binaries> {
        let from = |dir: &Path| {
            let b = Binaries {
                initdb: dir.join("initdb"),
                postgres: dir.join("postgres"),
                psql: dir.join("psql"),
            };
            (b.initdb.is_file() && b.postgres.is_file() && b.psql.is_file()).then_some(b)
        };
        if let Some(b) = versioned_dirs().iter().find_map(|d| from(d)) {
            return Ok(b);
        }
        let on_path = which("initdb")
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().and_then(from));
        on_path.ok_or(Error::PostgresMissing)
    }

    /// psql alone (enough for a server that already runs).
    fn find_psql() -> Result<PathBuf> {
        versioned_dirs()
            .iter()
            .map(|d| d.join("psql"))
            .find(|p| p.is_file())
            .or_else(|| which("psql"))
            .ok_or_else(|| {
                Error::Unexpected(
                    "psql not found in /usr/lib/postgresql/*/bin or on PATH — install it \
                     (Debian: apt-get install postgresql-client)"
                        .into(),
                )
            })
    }
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn versioned_dirs() -> Vec<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.0));
    v.into_iter().map(|(_, d)| d).collect()
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// PostgreSQL refuses to run as root: then initdb and the server run as `postgres` (the
/// account the Debian package creates), else `nobody`. `None` when not root.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Ok(Some((u.uid.as_raw(), u.gid.as_raw())));
        }
    }
    Err(Error::Unexpected(
        "running as root and neither user postgres nor nobody exists to run PostgreSQL as — \
         create one (Debian: apt-get install postgresql creates postgres)"
            .into(),
    ))
}

enum Started {
    Ready(Postgres),
    /// Another process took the port first; the log says so.
    PortTaken(String),
}

/// A command run as the unprivileged user (when root), in `dir`, with a minimal environment.
fn as_cluster_user(prog: &Path, user: Option<(u32, u32)>, dir: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(prog);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir(dir);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

/// How much a cluster keeps its commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Nothing flushed to disk: a test's data dies with it anyway.
    Tests,
    /// PostgreSQL's defaults.
    Default,
}

fn start_cluster(bins: &Binaries, durability: Durability) -> Result<Started> {
    use std::os::unix::process::CommandExt;
    let user = unprivileged_user()?;
    let dir = tempfile::Builder::new()
        .prefix("herd-pg-")
        .tempdir()
        .map_err(error::io("cannot create a temp dir for PostgreSQL"))?
        .keep();
    let cleanup = |e: Error| {
        let _ = std::fs::remove_dir_all(&dir);
        e
    };
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(error::io(format!(
                "cannot hand {} to PostgreSQL's user",
                dir.display()
            )))
            .map_err(cleanup)?;
    }
    let data = dir.join("data");
    let out = as_cluster_user(&bins.initdb, user, &dir)
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null())
        .output()
        .map_err(error::spawn(bins.initdb.display().to_string()))
        .map_err(cleanup)?;
    if !out.status.success() {
        return Err(cleanup(Error::Unexpected(format!(
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(error::io("cannot find a free loopback port"))
        .map_err(cleanup)?
        .port();
    let mut watchdog = as_cluster_user(Path::new("/bin/sh"), user, &dir)
        .arg("-c")
        .arg(WATCHDOG)
        .arg("herd-pg-watchdog")
        .arg(&dir)
        .arg(&bins.postgres)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(match durability {
            Durability::Tests => &[
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
            ][..],
            Durability::Default => &[][..],
        })
        .args(["-c", "max_connections=300"])
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(error::spawn("/bin/sh (PostgreSQL's watchdog)"))
        .map_err(cleanup)?;
    let stop = watchdog.stdin.take();
    let mut pid_line = String::new();
    if let Some(out) = watchdog.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut pid_line);
    }
    // From here on, dropping `cluster` stops postgres and deletes the dir.
    let cluster = Cluster {
        pid: pid_line.trim().parse().unwrap_or(0),
        dir,
        watchdog,
        stop,
    };
    let base = format!("postgres://{SUPERUSER}@127.0.0.1:{port}");
    let pg = Postgres {
        admin_url: format!("{base}/postgres"),
        base,
        query: String::new(),
        psql: bins.psql.clone(),
        cluster: Some(cluster),
    };
    let log_path = pg.cluster.as_ref().map(|c| c.dir.join("postgres.log"));
    let log = || {
        log_path
            .as_deref()
            .map(crate::process::tail)
            .unwrap_or_default()
    };
    let pid = pg.cluster.as_ref().map_or(0, |c| c.pid);
    let start = Instant::now();
    loop {
        if pg
            .run_sql(&pg.admin_url, "select 1")
            .is_ok_and(|o| o == "1")
        {
            return Ok(Started::Ready(pg));
        }
        if pid == 0 || !alive(pid) {
            let log = log();
            if log.contains("could not bind") || log.contains("already in use") {
                return Ok(Started::PortTaken(log));
            }
            return Err(Error::Exited {
                what: format!("PostgreSQL ({})", bins.postgres.display()),
                status: "at start".into(),
                log,
            });
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(Error::Timeout {
                what: format!("PostgreSQL on 127.0.0.1:{port} to accept connections"),
                after: READY_TIMEOUT,
                log: log(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_split_into_server_and_query() {
        let cases = [
            (
                "postgres://herd@127.0.0.1:5432",
                "postgres://herd@127.0.0.1:5432",
                "",
            ),
            ("postgres://u:p@h:1/db", "postgres://u:p@h:1", ""),
            (
                "postgresql://u@h:1/db?sslmode=disable",
                "postgres://u@h:1",
                "?sslmode=disable",
            ),
            ("postgres://u@h?a=b", "postgres://u@h", "?a=b"),
        ];
        for (url, base, query) in cases {
            let (b, q) = super::split_url(url).unwrap();
            assert_eq!((b.as_str(), q.as_str()), (base, query), "{url}");
        }
        for bad in ["mysql://x", "postgres://", "postgres:///db"] {
            assert!(super::split_url(bad).is_err(), "{bad}");
        }
    }
}
