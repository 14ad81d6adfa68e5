//! herd-actions: herd's calls to other systems — HTTP requests ([`Actions::http`]),
//! notifications ([`Actions::notify`]: Slack, Discord, a generic webhook, email over SMTP) and
//! LangFlow's REST API ([`langflow`]: check a source, list its flows, run one).
//!
//! Every call goes through, per host (`host:port`): a circuit breaker (after
//! [`ActionsConfig::breaker_threshold`] consecutive failures — connection error, timeout, 5xx,
//! 429 — calls fail at once without touching the network until a cooldown has passed, then one
//! probe decides), and a token bucket (the call's `rate`, else the default). Retries use
//! exponential backoff with full jitter and honour `Retry-After`. Every wait is bounded by the
//! call's own timeout, and every buffer by a cap: a response body is read up to
//! [`ActionsConfig::max_body`] (the rest is dropped, and the output says so).
//!
//! Breakers and buckets live in this value's memory: one [`Actions`] per server, cloned to
//! whoever calls out; a restarted server starts with every breaker closed.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod breaker;
mod bucket;
mod email;
mod http;
pub mod langflow;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use breaker::{Admit, Breaker, Outcome, Phase};
pub use bucket::Bucket;
use herd_core::actions::{HttpCall, Notify, Rate};

/// How an [`Actions`] behaves.
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    /// Consecutive failures that open a host's breaker (default 5).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before its probe (default 30 s).
    pub breaker_cooldown: Duration,
    /// The rate of calls to a host whose calls name none (default 20/s, burst 20).
    pub default_rate: Rate,
    /// The most of a response body read (default 1 MiB).
    pub max_body: usize,
    /// CA certificates (PEM) trusted besides the system's, for HTTPS and SMTP over TLS.
    pub extra_ca_pem: Option<String>,
    /// Sent as `User-Agent`.
    pub user_agent: String,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            default_rate: Rate {
                per_second: 20.0,
                burst: 20,
            },
            max_body: 1024 * 1024,
            extra_ca_pem: None,
            user_agent: concat!("herd/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionResult {
    /// The call got what it expected.
    pub ok: bool,
    /// The last response's status, if one came.
    pub status: Option<u16>,
    /// What an operator reads as the step's output: one line per earlier attempt, then the
    /// last response's status line, headers and body (capped; truncation marked).
    pub output: String,
    /// `status` (when a response came) and the extracted keys.
    pub outputs: BTreeMap<String, String>,
    /// Attempts that reached the network.
    pub attempts: u32,
    /// Why the call failed, in one line.
    pub error: Option<String>,
}

impl ActionResult {
    fn failed(error: String) -> ActionResult {
        ActionResult {
            output: format!("{error}\n"),
            error: Some(error),
            ..Default::default()
        }
    }
}

/// One host's breaker, as shown (`GET /api/v1/breakers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerState {
    /// `host:port`.
    pub host: String,
    pub phase: BreakerPhase,
    pub consecutive_failures: u32,
    /// When it opened (ms since the epoch), while open or half-open.
    pub opened_at_ms: Option<u64>,
    /// When its next probe may go (ms since the epoch), while open or half-open.
    pub next_probe_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPhase {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerPhase::Closed => "closed",
            BreakerPhase::Open => "open",
            BreakerPhase::HalfOpen => "half_open",
        }
    }
}

/// What the calls of an [`Actions`] came to since it was made (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionsStats {
    /// Calls that got what they expected.
    pub succeeded: u64,
    /// Calls that did not (refused ones included).
    pub failed: u64,
    /// Attempts refused at once because their host's breaker was open.
    pub refused: u64,
    /// Attempts that reached the network.
    pub attempts: u64,
}

#[derive(Default)]
struct Stats {
    succeeded: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    attempts: AtomicU64,
}

#[derive(Default)]
struct Hosts {
    breakers: HashMap<String, Breaker>,
    buckets: HashMap<String, Bucket>,
}

struct Inner {
    config: ActionsConfig,
    client: OnceLock<Result<reqwest::Client, String>>,
    hosts: Mutex<Hosts>,
    stats: Stats,
}

/// herd's caller of other systems; cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Actions {
    inner: Arc<Inner>,
}

impl Actions {
    /// The HTTP client (and the system's CA certificates) is set up on the first call.
    pub fn new(config: ActionsConfig) -> Actions {
        Actions {
            inner: Arc::new(Inner {
                config,
                client: OnceLock::new(),
                hosts: Mutex::new(Hosts::default()),
                stats: Stats::default(),
            }),
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        self.inner
            .client
            .get_or_init(|| http::client(&self.inner.config))
            .clone()
    }

    pub fn config(&self) -> &ActionsConfig {
        &self.inner.config
    }

    /// Performs one HTTP call (see [`HttpCall`]); never panics, every failure is in the result.
    pub async fn http(&self, call: &HttpCall) -> ActionResult {
        if let Err(e) = call.check() {
            return self.counted(ActionResult::failed(format!("http: {e}")));
        }
        let what = format!("{} {}", call.method_upper(), call.url);
        self.counted(http::perform(self, call, what).await)
    }

    fn counted(&self, r: ActionResult) -> ActionResult {
        let s = &self.inner.stats;
        let outcome = if r.ok { &s.succeeded } else { &s.failed };
        outcome.fetch_add(1, Ordering::Relaxed);
        s.attempts
            .fetch_add(u64::from(r.attempts), Ordering::Relaxed);
        r
    }

    /// Counts a call made outside `http`/`notify` (LangFlow's).
    fn count(&self, ok: bool, attempts: u32) {
        let s = &self.inner.stats;
        let outcome = if ok { &s.succeeded } else { &s.failed };
        outcome.fetch_add(1, Ordering::Relaxed);
        s.attempts.fetch_add(u64::from(attempts), Ordering::Relaxed);
    }

    /// What the calls came to since this value was made.
    pub fn stats(&self) -> ActionsStats {
        let s = &self.inner.stats;
        ActionsStats {
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            attempts: s.attempts.load(Ordering::Relaxed),
        }
    }

    /// Sends one notification.
    pub async fn notify(&self, n: &Notify) -> ActionResult {
        self.notify_with(n, &serde_json::Map::new()).await
    }

    /// Sends one notification; a `webhook` one carries `data`'s fields beside `text` in its
    /// JSON body (a field named `text` stays the notification's own). Slack, Discord and
    /// email get the text alone.
    pub async fn notify_with(
        &self,
        n: &Notify,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> ActionResult {
        if let Err(e) = n.check() {
            return self.counted(ActionResult::failed(format!("notify: {e}")));
        }
        let r = match n {
            Notify::Slack(c) => {
                self.post_json("slack", &c.webhook, &serde_json::json!({"text": c.text}))
                    .await
            }
            Notify::Discord(c) => {
                self.post_json(
                    "discord",
                    &c.webhook,
                    &serde_json::json!({"content": c.text}),
                )
                .await
            }
            Notify::Webhook { url, text } => {
                let mut body = data.clone();
                body.insert("text".into(), serde_json::Value::String(text.clone()));
                self.post_json("notify", url, &serde_json::Value::Object(body))
                    .await
            }
            Notify::Email(e) => email::send(self, e).await,
        };
        self.counted(r)
    }

    /// A webhook POST; its URL is not shown whole (the path is the webhook's credential).
    async fn post_json(&self, kind: &str, url: &str, body: &serde_json::Value) -> ActionResult {
        let mut call = HttpCall::get(url);
        call.method = "POST".to_string();
        call.body = Some(body.clone());
        call.retries = Some(NOTIFY_RETRY);
        let what = format!("{kind} webhook {}", http::webhook_shown(url));
        http::perform(self, &call, what).await
    }

    /// Every host's breaker herd has called since it started, by host.
    pub fn breakers(&self) -> Vec<BreakerState> {
        let cooldown = self.inner.config.breaker_cooldown;
        let now = Instant::now();
        let wall = SystemTime::now();
        let at = |i: Instant| -> u64 {
            let t = if i <= now {
                wall.checked_sub(now - i)
            } else {
                wall.checked_add(i - now)
            };
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64)
        };
        let hosts = self.hosts();
        let mut out: Vec<BreakerState> = hosts
            .breakers
            .iter()
            .map(|(host, b)| {
                let (phase, since) = match b.phase() {
                    Phase::Closed => (BreakerPhase::Closed, None),
                    Phase::Open { since } => (BreakerPhase::Open, Some(since)),
                    Phase::HalfOpen { since } => (BreakerPhase::HalfOpen, Some(since)),
                };
                BreakerState {
                    host: host.clone(),
                    phase,
                    consecutive_failures: b.consecutive_failures(),
                    opened_at_ms: since.map(at),
                    next_probe_ms: since.map(|s| at(s + cooldown)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// Reserves an attempt on the breaker of `url`'s host for a call made elsewhere (a
    /// LangFlow call an agent makes for this server): `Err` is the one line of an open
    /// breaker's refusal; the reservation reports how the call went.
    pub fn reserve(&self, url: &str) -> Result<Reservation, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let host = http::host_key(&parsed);
        self.admit(&host).map(Reservation)
    }

    /// Hosts remembered before idle ones (closed breaker, no failures) are forgotten.
    const MAX_HOSTS: usize = 4096;

    fn hosts(&self) -> MutexGuard<'_, Hosts> {
        // The lock is never held across a call that could panic.
        self.inner
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks `host`'s breaker whether an attempt may go; `Err` is the one line of a refusal.
    fn admit(&self, host: &str) -> Result<Permit, String> {
        let cooldown = self.inner.config.breaker_cooldown;
        let now = Instant::now();
        let admit = {
            let mut hosts = self.hosts();
            if hosts.breakers.len() >= Self::MAX_HOSTS && !hosts.breakers.contains_key(host) {
                hosts.breakers.retain(|_, b| !b.is_idle());
                let Hosts { breakers, buckets } = &mut *hosts;
                buckets.retain(|h, _| breakers.contains_key(h));
            }
            hosts
                .breakers
                .entry(host.to_string())
                .or_default()
                .admit(now, cooldown)
        };
        match admit {
            Admit::Go => Ok(Permit::new(self, host, false)),
            Admit::Probe => Ok(Permit::new(self, host, true)),
            Admit::Refuse {
                opened_at,
                next_probe,
            } => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(format!(
                    "circuit open for {host} since {} — next probe at {}",
                    wall_clock(opened_at, now),
                    wall_clock(next_probe, now)
                ))
            }
        }
    }

    /// Reserves a token of `host`'s bucket and waits for it; `Err` when it would come later
    /// than `max_wait`.
    async fn take_token(&self, host: &str, rate: Rate, max_wait: Duration) -> Result<(), String> {
        let now = Instant::now();
        let reserved = {
            let mut hosts = self.hosts();
            let bucket = hosts
                .buckets
                .entry(host.to_string())
                .or_insert_with(|| Bucket::new(rate, now));
            bucket.set_rate(rate, now);
            bucket.reserve(now, max_wait)
        };
        match reserved {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Err(wait) => Err(format!(
                "rate limit for {host} ({}/s, burst {}): the next call may go in {}, beyond the call's remaining time of {}",
                rate.per_second,
                rate.burst,
                herd_core::format_duration(wait),
                herd_core::format_duration(max_wait)
            )),
        }
    }
}

/// Whether `pem` holds CA certificates herd can trust (for `ActionsConfig::extra_ca_pem`);
/// `Err` says why not, in one line.
pub fn check_ca_pem(pem: &str) -> Result<(), String> {
    let config = ActionsConfig {
        extra_ca_pem: Some(pem.to_string()),
        ..ActionsConfig::default()
    };
    let certs = http::extra_roots(&config)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    Ok(())
}

/// Retries of a notification's webhook POST.
const NOTIFY_RETRY: herd_core::actions::Retry = herd_core::actions::Retry {
    count: 2,
    backoff_ms: 500,
    max_backoff_ms: 5_000,
};

/// An attempt admitted by [`Actions::reserve`]: dropped unreported, a probe counts as failed.
pub struct Reservation(Permit);

impl Reservation {
    pub fn succeeded(self) {
        self.0.report(Outcome::Healthy);
    }

    pub fn failed(self) {
        self.0.report(Outcome::Failed);
    }
}

/// An admitted attempt: reports its outcome to the breaker; dropped unreported (the call was
/// cancelled), a probe counts as failed so the breaker does not stay half-open.
struct Permit {
    actions: Actions,
    host: String,
    probe: bool,
    reported: bool,
}

impl Permit {
    fn new(actions: &Actions, host: &str, probe: bool) -> Permit {
        Permit {
            actions: actions.clone(),
            host: host.to_string(),
            probe,
            reported: false,
        }
    }

    fn report(mut self, outcome: Outcome) {
        self.reported = true;
        self.record(outcome);
    }

    fn record(&self, outcome: Outcome) {
        let threshold = self.actions.inner.config.breaker_threshold;
        let mut hosts = self.actions.hosts();
        if let Some(b) = hosts.breakers.get_mut(&self.host) {
            let before = b.phase();
            b.record(Instant::now(), outcome, self.probe, threshold);
            let after = b.phase();
            if std::mem::discriminant(&before) != std::mem::discriminant(&after) {
                tracing::warn!(host = %self.host, from = ?before, to = ?after, "circuit breaker");
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.record(Outcome::Failed);
        }
    }
}

impl Permit {
    /// The attempt was not sent after all (e.g. refused by the rate limit): nothing counts.
    fn release(mut self) {
        self.reported = true;
        if self.probe {
            let mut hosts = self.actions.hosts();
            if let Some(b) = hosts.breakers.get_mut(&self.host) {
                b.release_probe();
            }
        }
    }
}

/// `instant` as a UTC wall-clock time (RFC 3339, seconds).
fn wall_clock(instant: Instant, now: Instant) -> String {
    let wall = SystemTime::now();
    let t = if instant <= now {
        wall.checked_sub(now - instant)
    } else {
        wall.checked_add(instant - now)
    };
    t.map_or_else(
        || "?".to_string(),
        |t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        },
    )
}
