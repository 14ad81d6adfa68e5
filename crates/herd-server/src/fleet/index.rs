//! The fleet index: every live (not revoked) agent in memory, with its selector view and an
//! inverted index of attribute values, so resolving targets, authenticating sessions and
//! listing agents never scan the database. Hellos and heartbeats update it in place and are
//! written to the store in batches by [`flush_loop`].
//!
//! Invariant: an agent is in the index iff its row exists and is not revoked; the index is
//! loaded from the store at start and changed only together with the store (join, label,
//! revoke) or ahead of it (hello, heartbeat: the row catches up at the next flush).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use herd_core::{Facts, LabelEdits, Labels, Metrics, Selector, Target, TargetIndex};
use herd_store::{AgentFlush, AgentHello, AgentRow};

/// An agent as selectors see it: its name, labels, then facts, and its addresses.
pub struct AgentView {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub ips: Vec<String>,
}

impl AgentView {
    pub fn new(a: &AgentRow) -> AgentView {
        let mut attrs: BTreeMap<String, String> = a
            .facts
            .attrs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // Labels win over facts of the same name.
        attrs.extend(a.effective_labels());
        AgentView {
            name: a.name.clone(),
            attrs,
            ips: a.facts.ips.clone(),
        }
    }
}

impl Target for AgentView {
    fn name(&self) -> &str {
        &self.name
    }
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
    fn ips(&self) -> Vec<&str> {
        self.ips.iter().map(String::as_str).collect()
    }
}

struct Slot {
    row: AgentRow,
    view: AgentView,
    /// Changes whenever `view` does (never the same for two views of one index).
    version: u64,
}

/// Changes not yet written to the store.
#[derive(Default)]
struct Dirty {
    metrics: Option<Metrics>,
    hello: bool,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
    by_name: HashMap<String, u32>,
    /// key -> value -> slots.
    by_attr: HashMap<String, HashMap<String, BTreeSet<u32>>>,
    dirty: HashMap<u32, Dirty>,
    /// The version of the latest view made.
    views: u64,
}

#[derive(Default)]
pub struct AgentIndex {
    inner: RwLock<Inner>,
}

impl AgentIndex {
    pub fn load(rows: Vec<AgentRow>) -> AgentIndex {
        let idx = AgentIndex::default();
        {
            let mut inner = idx.write();
            for row in rows.into_iter().filter(|r| r.revoked_at.is_none()) {
                inner.insert(row);
            }
        }
        idx
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// A newly joined agent.
    pub fn insert(&self, row: AgentRow) {
        self.write().insert(row);
    }

    pub fn get(&self, id: &str) -> Option<AgentRow> {
        let inner = self.read();
        inner.slot_of(id).map(|s| s.row.clone())
    }

    /// `f` of a live agent's row, its selector view and the view's version (which changes
    /// whenever what selectors see of it does), under the index's read lock.
    pub fn with_view<R>(
        &self,
        id: &str,
        f: impl FnOnce(&AgentRow, &AgentView, u64) -> R,
    ) -> Option<R> {
        let inner = self.read();
        inner.slot_of(id).map(|s| f(&s.row, &s.view, s.version))
    }

    /// When the agent was last heard from (hello or heartbeat; ms since the epoch).
    pub fn last_seen(&self, id: &str) -> Option<i64> {
        self.read().slot_of(id).and_then(|s| s.row.last_seen)
    }

    pub fn by_name(&self, name: &str) -> Option<AgentRow> {
        let inner = self.read();
        let slot = *inner.by_name.get(name)?;
        inner.slot(slot).map(|s| s.row.clone())
    }

    /// Every live agent, by name.
    pub fn list(&self) -> Vec<AgentRow> {
        let inner = self.read();
        let mut rows: Vec<AgentRow> = inner.live().map(|s| s.row.clone()).collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// `(id, name)` of every live agent any of `sels` picks (or all), by name.
    pub fn resolve(&self, sels: &[Selector], all: bool) -> Vec<(String, String)> {
        let inner = self.read();
        let mut slots: BTreeSet<u32> = BTreeSet::new();
        if all {
            slots.extend(inner.all());
        } else {
            for s in sels {
                slots.extend(s.select(&*inner));
            }
        }
        let mut out: Vec<(String, String)> = slots
            .into_iter()
            .filter_map(|i| inner.slot(i))
            .map(|s| (s.row.id.clone(), s.row.name.clone()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// An agent said hello: its reported labels, facts and version.
    pub fn hello(&self, id: &str, labels: Labels, facts: Facts, version: String, at: i64) {
        let mut inner = self.write();
        let Some(&slot) = inner.by_id.get(id) else {
            return;
        };
        inner.update(slot, |row| {
            row.labels = labels;
            row.facts = facts;
            row.version = version;
            row.last_seen = Some(at);
        });
        inner.dirty.entry(slot).or_default().hello = true;
    }

    /// A heartbeat: last seen and the latest metrics (no re-indexing).
    pub fn seen(&self, id: &str, metrics: Option<Metrics>, at: i64) {
        let mut inner = self.write();
        let Some(&slot) = inner.by_id.get(id) else {
            return;
        };
        if let Some(Some(s)) = inner.slots.get_mut(slot as usize) {
            s.row.last_seen = Some(at);
            if metrics.is_some() {
                s.row.metrics.clone_from(&metrics);
            }
        }
        let d = inner.dirty.entry(slot).or_default();
        if metrics.is_some() {
            d.metrics = metrics;
        }
    }

    pub fn set_label_edits(&self, id: &str, edits: LabelEdits) {
        let mut inner = self.write();
        if let Some(&slot) = inner.by_id.get(id) {
            inner.update(slot, |row| row.label_edits = edits);
        }
    }

    pub fn remove(&self, id: &str) {
        let mut inner = self.write();
        if let Some(slot) = inner.by_id.get(id).copied() {
            inner.unindex(slot);
            inner.by_id.remove(id);
            inner.dirty.remove(&slot);
            if let Some(s) = inner.slots.get_mut(slot as usize).and_then(Option::take) {
                inner.by_name.remove(&s.row.name);
            }
            inner.free.push(slot);
        }
    }

    /// Takes the changes to write to the store.
    pub fn take_dirty(&self) -> Vec<AgentFlush> {
        let mut inner = self.write();
        let dirty = std::mem::take(&mut inner.dirty);
        dirty
            .into_iter()
            .filter_map(|(slot, d)| {
                let s = inner.slot(slot)?;
                Some(AgentFlush {
                    id: s.row.id.clone(),
                    last_seen: s.row.last_seen.unwrap_or_default(),
                    metrics: d.metrics,
                    hello: d.hello.then(|| AgentHello {
                        labels: s.row.labels.clone(),
                        facts: s.row.facts.clone(),
                        version: s.row.version.clone(),
                    }),
                })
            })
            .collect()
    }
}

impl Inner {
    fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    fn slot_of(&self, id: &str) -> Option<&Slot> {
        self.slot(*self.by_id.get(id)?)
    }

    fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
    }

    fn insert(&mut self, row: AgentRow) {
        if let Some(&old) = self.by_id.get(&row.id) {
            self.update(old, |r| *r = row);
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(row.id.clone(), slot);
        self.by_name.insert(row.name.clone(), slot);
        let view = AgentView::new(&row);
        self.views += 1;
        let version = self.views;
        self.slots[slot as usize] = Some(Slot { row, view, version });
        self.reindex(slot);
    }

    /// Changes a row and keeps the view and the attribute index in step.
    fn update(&mut self, slot: u32, f: impl FnOnce(&mut AgentRow)) {
        self.unindex(slot);
        self.views += 1;
        let version = self.views;
        if let Some(Some(s)) = self.slots.get_mut(slot as usize) {
            f(&mut s.row);
            s.view = AgentView::new(&s.row);
            s.version = version;
        }
        self.reindex(slot);
    }

    fn unindex(&mut self, slot: u32) {
        let Some(s) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
            return;
        };
        for (k, v) in &s.view.attrs {
            if let Some(values) = self.by_attr.get_mut(k) {
                if let Some(set) = values.get_mut(v) {
                    set.remove(&slot);
                    if set.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.by_attr.remove(k);
                }
            }
        }
    }

    fn reindex(&mut self, slot: u32) {
        let Some(s) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
            return;
        };
        for (k, v) in &s.view.attrs {
            self.by_attr
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(slot);
        }
    }
}

impl TargetIndex for Inner {
    fn all(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&i| self.slot(i).is_some())
            .collect()
    }

    fn with_attr(&self, key: &str, value: &str) -> Option<Vec<u32>> {
        // Every attribute of every agent is indexed, so a miss is an empty answer.
        Some(
            self.by_attr
                .get(key)
                .and_then(|values| values.get(value))
                .map(|set| set.iter().copied().collect())
                .unwrap_or_default(),
        )
    }

    fn named(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    fn target(&self, id: u32) -> Option<&dyn Target> {
        self.slot(id).map(|s| &s.view as &dyn Target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str, labels: &str) -> AgentRow {
        AgentRow {
            id: id.into(),
            name: name.into(),
            cred_hash: String::new(),
            labels: serde_json::from_str(labels).unwrap(),
            label_edits: LabelEdits::new(),
            allowed_labels: None,
            facts: Facts {
                os: "debian".into(),
                cpus: 2,
                ..Facts::default()
            },
            metrics: None,
            version: String::new(),
            created_at: 0,
            last_seen: None,
            revoked_at: None,
        }
    }

    fn names(v: Vec<(String, String)>) -> Vec<String> {
        v.into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn resolves_through_the_index_and_follows_changes() {
        let idx = AgentIndex::load(vec![
            row("a1", "web-1", r#"{"role":"web"}"#),
            row("a2", "web-2", r#"{"role":"web"}"#),
            row("a3", "db-1", r#"{"role":"db"}"#),
        ]);
        let sel = |s: &str| vec![Selector::parse(s).unwrap()];
        assert_eq!(
            names(idx.resolve(&sel("role=web"), false)),
            ["web-1", "web-2"]
        );
        assert_eq!(
            names(idx.resolve(&sel("os=debian & !role=web"), false)),
            ["db-1"]
        );
        assert_eq!(names(idx.resolve(&sel("cpus=2 & web-2"), false)), ["web-2"]);
        assert_eq!(idx.resolve(&[], true).len(), 3);

        // A hello that changes labels moves the agent between index entries.
        let db: Labels = [("role".to_string(), "db".to_string())].into();
        idx.hello("a2", db, Facts::default(), "1".into(), 5);
        assert_eq!(names(idx.resolve(&sel("role=web"), false)), ["web-1"]);
        assert_eq!(
            names(idx.resolve(&sel("role=db"), false)),
            ["db-1", "web-2"]
        );
        // Operator labels win over reported ones.
        idx.set_label_edits(
            "a1",
            [("role".to_string(), Some("cache".to_string()))].into(),
        );
        assert!(idx.resolve(&sel("role=web"), false).is_empty());

        idx.remove("a3");
        assert_eq!(names(idx.resolve(&sel("role=db"), false)), ["web-2"]);
        assert!(idx.get("a3").is_none());
        assert!(idx.by_name("db-1").is_none());
        // A freed slot is reused by the next join without leaking old index entries.
        idx.insert(row("a4", "new-1", r#"{"role":"db"}"#));
        assert_eq!(
            names(idx.resolve(&sel("role=db"), false)),
            ["new-1", "web-2"]
        );
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.list().len(), 3);

        let dirty = idx.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert!(dirty[0].hello.is_some());

        // A view's version moves with what selectors see, not with heartbeats (alert rules
        // keep which of them match an agent until it moves).
        let version = |id: &str| idx.with_view(id, |_, _, v| v).unwrap();
        let v1 = version("a1");
        idx.seen("a1", Some(Metrics::default()), 8);
        assert_eq!(version("a1"), v1);
        idx.set_label_edits("a1", [("role".to_string(), Some("web".to_string()))].into());
        let v2 = version("a1");
        assert!(v2 > v1);
        idx.hello("a1", Labels::new(), Facts::default(), "1".into(), 9);
        assert!(version("a1") > v2);
        assert_ne!(version("a1"), version("a2"));
        assert!(idx.with_view("a3", |_, _, v| v).is_none());
        idx.take_dirty();
        idx.seen("a1", Some(Metrics::default()), 9);
        let dirty = idx.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].last_seen, 9);
        assert!(idx.take_dirty().is_empty());
    }
}
