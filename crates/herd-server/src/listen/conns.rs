//! The connections the server holds and the limits on them, so that sockets nobody has
//! authenticated cannot crowd out agents, `/healthz` or the API.
//!
//! Every accepted connection is admitted here first. A connection is **idle** while none of
//! its requests is in flight (an agent's `Session` stream keeps its connection busy for as long
//! as the agent is connected) and **authenticated** once one of its requests carried a good
//! agent credential or API key. The limits:
//! - in total, at most `max_total` connections (the open-files limit less a reserve kept for
//!   the store, output logs and blobs);
//! - per source address, at most `max_unauth_per_source` unauthenticated connections (a whole
//!   fleet may sit behind one NAT address; each of its agents authenticates);
//! - an unauthenticated connection has at most `max_unauth_streams` requests in flight (the
//!   rest are answered "too many" at once);
//! - a connection idle for `idle_unauth` (unauthenticated) or `idle_authed` is closed.
//!
//! A new connection over a limit takes the place of the connection that has been idle the
//! longest (of its source when the per-source limit is hit); when every connection is busy
//! the new one is closed. Slots are freed at eviction, before the evicted connection's
//! descriptor is closed, which the reserve covers.
//!
//! **Invariant:** the table's size is bounded by `max_total`, its per-source counts by
//! `max_unauth_per_source`, and admission is O(log n): the idle orders are ordered maps keyed
//! by when each connection became idle.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_total: usize,
    pub max_unauth_per_source: usize,
    pub max_unauth_streams: usize,
    pub idle_unauth: Duration,
    pub idle_authed: Duration,
}

/// Descriptors kept for everything but connections: at least this many…
const RESERVE_MIN: u64 = 256;
/// …or this fraction of the open-files limit, whichever is more.
const RESERVE_SHARE: u64 = 10;

impl Limits {
    /// Limits for a process allowed `open_files` descriptors.
    pub fn for_open_files(open_files: u64) -> Limits {
        let reserve = RESERVE_MIN.max(open_files / RESERVE_SHARE);
        Limits {
            max_total: open_files.saturating_sub(reserve).max(16) as usize,
            max_unauth_per_source: 256,
            max_unauth_streams: 8,
            idle_unauth: Duration::from_secs(10),
            idle_authed: Duration::from_secs(120),
        }
    }

    /// Limits for this process's open-files limit (its soft limit, as raised at start).
    pub fn from_rlimit() -> Limits {
        use nix::sys::resource::{Resource, getrlimit};
        let open_files = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
        Limits::for_open_files(open_files)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every connection is busy and the table is full.
    Full,
    /// The source holds its share of unauthenticated connections, all busy.
    Source,
}

pub struct Table {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Bumped whenever a connection becomes idle: the keys of the idle orders.
    tick: u64,
    conns: HashMap<u64, Slot>,
    /// Idle connections, longest idle first.
    idle: BTreeMap<u64, u64>,
    /// Idle unauthenticated connections per source, longest idle first.
    idle_unauth: HashMap<IpAddr, BTreeMap<u64, u64>>,
    unauth: HashMap<IpAddr, usize>,
}

struct Slot {
    source: IpAddr,
    authed: bool,
    in_flight: usize,
    /// The key in the idle orders while idle.
    idle_tick: Option<u64>,
    idle_since: Instant,
    close: CancellationToken,
}

impl Table {
    pub fn new(limits: Limits) -> Arc<Table> {
        Arc::new(Table {
            limits,
            inner: Mutex::new(Inner::default()),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can panic half-way; a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `source`, evicting the longest-idle connection if a limit
    /// is reached.
    pub fn admit(self: &Arc<Table>, source: IpAddr) -> Result<Arc<Conn>, Refused> {
        let mut g = self.lock();
        if g.unauth.get(&source).copied().unwrap_or(0) >= self.limits.max_unauth_per_source {
            let oldest = g
                .idle_unauth
                .get(&source)
                .and_then(|o| o.first_key_value())
                .map(|(_, id)| *id);
            match oldest {
                Some(id) => g.evict(id),
                None => return Err(Refused::Source),
            }
        }
        if g.conns.len() >= self.limits.max_total {
            match g.idle.first_key_value().map(|(_, id)| *id) {
                Some(id) => g.evict(id),
                None => return Err(Refused::Full),
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        let tick = g.next_tick();
        let close = CancellationToken::new();
        g.conns.insert(
            id,
            Slot {
                source,
                authed: false,
                in_flight: 0,
                idle_tick: Some(tick),
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        g.idle.insert(tick, id);
        g.idle_unauth.entry(source).or_default().insert(tick, id);
        *g.unauth.entry(source).or_default() += 1;
        Ok(Arc::new(Conn {
            id,
            table: self.clone(),
            authed: AtomicBool::new(false),
            changed: Notify::new(),
            close,
        }))
    }

    /// Connections held now, and of them unauthenticated ones.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.conns.len(), g.unauth.values().sum())
    }
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Takes `id` out of the idle orders.
    fn unidle(&mut self, id: u64) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(tick) = slot.idle_tick.take() else {
            return;
        };
        let (source, authed) = (slot.source, slot.authed);
        self.idle.remove(&tick);
        if !authed {
            self.remove_idle_unauth(source, tick);
        }
    }

    fn remove_idle_unauth(&mut self, source: IpAddr, tick: u64) {
        if let Some(order) = self.idle_unauth.get_mut(&source) {
            order.remove(&tick);
            if order.is_empty() {
                self.idle_unauth.remove(&source);
            }
        }
    }

    /// Removes `id` from the table, counts and all.
    fn remove(&mut self, id: u64) -> Option<Slot> {
        self.unidle(id);
        let slot = self.conns.remove(&id)?;
        if !slot.authed
            && let Some(n) = self.unauth.get_mut(&slot.source)
        {
            *n -= 1;
            if *n == 0 {
                self.unauth.remove(&slot.source);
            }
        }
        Some(slot)
    }

    fn evict(&mut self, id: u64) {
        if let Some(slot) = self.remove(id) {
            slot.close.cancel();
        }
    }
}

/// One admitted connection (a request extension, so handlers can mark it authenticated).
pub struct Conn {
    id: u64,
    table: Arc<Table>,
    authed: AtomicBool,
    /// Signalled when the connection becomes idle or authenticated.
    changed: Notify,
    close: CancellationToken,
}

/// What a connection's watchdog decided.
pub enum Close {
    /// Idle for longer than its limit.
    Idle,
    /// Another connection took its place.
    Evicted,
}

impl Conn {
    /// One of its requests carried a good credential: it no longer counts against its
    /// source's unauthenticated connections, and may open as many streams as HTTP/2 allows.
    pub fn authenticated(&self) {
        if self.authed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut g = self.table.lock();
        let Some(slot) = g.conns.get_mut(&self.id) else {
            return;
        };
        slot.authed = true;
        let (source, tick) = (slot.source, slot.idle_tick);
        if let Some(tick) = tick {
            g.remove_idle_unauth(source, tick);
        }
        if let Some(n) = g.unauth.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                g.unauth.remove(&source);
            }
        }
        drop(g);
        self.changed.notify_one();
    }

    /// A request starts; `None` when the connection is unauthenticated and already has its
    /// share of requests in flight. The guard ends the request when dropped.
    pub fn begin(self: &Arc<Conn>) -> Option<InFlight> {
        let authed = self.authed.load(Ordering::Acquire);
        let mut g = self.table.lock();
        let limit = self.table.limits.max_unauth_streams;
        let g = &mut *g;
        let Some(slot) = g.conns.get_mut(&self.id) else {
            // Evicted: let the request through; the connection is closing.
            return Some(InFlight { conn: self.clone() });
        };
        if !authed && slot.in_flight >= limit {
            return None;
        }
        slot.in_flight += 1;
        if slot.in_flight == 1 {
            g.unidle(self.id);
        }
        Some(InFlight { conn: self.clone() })
    }

    fn end(&self) {
        let mut guard = self.table.lock();
        let g = &mut *guard;
        let tick = g.next_tick();
        let Some(slot) = g.conns.get_mut(&self.id) else {
            return;
        };
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if slot.in_flight > 0 {
            return;
        }
        slot.idle_tick = Some(tick);
        slot.idle_since = Instant::now();
        let (source, authed) = (slot.source, slot.authed);
        g.idle.insert(tick, self.id);
        if !authed {
            g.idle_unauth
                .entry(source)
                .or_default()
                .insert(tick, self.id);
        }
        drop(guard);
        self.changed.notify_one();
    }

    /// When the connection, idle now, may be closed; `None` while a request is in flight.
    fn idle_deadline(&self) -> Option<Instant> {
        let g = self.table.lock();
        let slot = g.conns.get(&self.id)?;
        if slot.in_flight > 0 {
            return None;
        }
        let limits = self.table.limits;
        let limit = if slot.authed {
            limits.idle_authed
        } else {
            limits.idle_unauth
        };
        Some(slot.idle_since + limit)
    }

    /// Resolves when the connection is to be closed: evicted, or idle for too long.
    pub async fn watchdog(&self) -> Close {
        loop {
            let deadline = self.idle_deadline();
            tokio::select! {
                _ = self.close.cancelled() => return Close::Evicted,
                _ = self.changed.notified() => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if self.idle_deadline().is_some_and(|d| d <= Instant::now()) {
                        return Close::Idle;
                    }
                }
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

/// A request in flight on a connection.
pub struct InFlight {
    conn: Arc<Conn>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_total: usize, per_source: usize) -> Limits {
        Limits {
            max_total,
            max_unauth_per_source: per_source,
            max_unauth_streams: 2,
            idle_unauth: Duration::from_millis(50),
            idle_authed: Duration::from_secs(3600),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_connection() {
        let t = Table::new(limits(3, 10));
        let a = t.admit(ip(1)).unwrap();
        let b = t.admit(ip(2)).unwrap();
        let c = t.admit(ip(3)).unwrap();
        // `a` is busy, `b` has been idle the longest.
        let _busy = a.begin().unwrap();
        let d = t.admit(ip(4)).unwrap();
        assert!(b.close.is_cancelled());
        assert!(!a.close.is_cancelled() && !c.close.is_cancelled());
        assert_eq!(t.counts().0, 3);
        // `c` went idle before `d` was admitted.
        let _e = t.admit(ip(5)).unwrap();
        assert!(c.close.is_cancelled());
        assert!(!d.close.is_cancelled());
    }

    #[test]
    fn a_table_of_busy_connections_refuses_the_new_one() {
        let t = Table::new(limits(2, 10));
        let a = t.admit(ip(1)).unwrap();
        let b = t.admit(ip(2)).unwrap();
        let (_x, _y) = (a.begin().unwrap(), b.begin().unwrap());
        assert_eq!(t.admit(ip(3)).err(), Some(Refused::Full));
        assert!(!a.close.is_cancelled() && !b.close.is_cancelled());
    }

    #[test]
    fn a_source_over_its_share_evicts_its_own_idle_connection_only() {
        let t = Table::new(limits(100, 2));
        let other = t.admit(ip(9)).unwrap();
        let a = t.admit(ip(1)).unwrap();
        let b = t.admit(ip(1)).unwrap();
        let c = t.admit(ip(1)).unwrap();
        assert!(a.close.is_cancelled(), "the source's longest idle goes");
        assert!(
            !other.close.is_cancelled(),
            "another source's connection stays"
        );
        let (_x, _y) = (b.begin().unwrap(), c.begin().unwrap());
        assert_eq!(t.admit(ip(1)).err(), Some(Refused::Source));
        // Authenticated connections do not count against the source.
        b.authenticated();
        let _d = t.admit(ip(1)).unwrap();
        assert_eq!(t.counts(), (4, 3));
    }

    #[test]
    fn an_unauthenticated_connection_has_few_requests_in_flight() {
        let t = Table::new(limits(10, 10));
        let a = t.admit(ip(1)).unwrap();
        let (x, _y) = (a.begin().unwrap(), a.begin().unwrap());
        assert!(a.begin().is_none());
        drop(x);
        let _z = a.begin().unwrap();
        a.authenticated();
        let more: Vec<_> = (0..20).map(|_| a.begin().unwrap()).collect();
        assert_eq!(more.len(), 20);
    }

    #[test]
    fn dropping_connections_frees_their_slots() {
        let t = Table::new(limits(10, 10));
        let conns: Vec<_> = (0..10).map(|_| t.admit(ip(1)).unwrap()).collect();
        conns[3].authenticated();
        drop(conns);
        assert_eq!(t.counts(), (0, 0));
        let g = t.lock();
        assert!(g.idle.is_empty() && g.idle_unauth.is_empty() && g.unauth.is_empty());
    }

    #[tokio::test]
    async fn an_idle_unauthenticated_connection_is_closed_and_a_busy_one_is_not() {
        let t = Table::new(limits(10, 10));
        let idle = t.admit(ip(1)).unwrap();
        assert!(matches!(idle.watchdog().await, Close::Idle));
        let busy = t.admit(ip(1)).unwrap();
        let req = busy.begin().unwrap();
        let watched = tokio::time::timeout(Duration::from_millis(200), busy.watchdog()).await;
        assert!(
            watched.is_err(),
            "a connection with a request in flight stays"
        );
        drop(req);
        assert!(matches!(busy.watchdog().await, Close::Idle));
        let evicted = t.admit(ip(2)).unwrap();
        t.lock().evict(evicted.id);
        assert!(matches!(evicted.watchdog().await, Close::Evicted));
    }
}
