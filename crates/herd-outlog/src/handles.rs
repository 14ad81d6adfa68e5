//! Bounded cache of open append handles, one slot per task.
//!
//! Appends are sequential writes to a file that stays open between calls; reopening per
//! append would cost an open/close pair per 64 KiB chunk. Each task gets a slot behind its
//! own mutex, so appends to one task are serialized while different tasks write in
//! parallel; the global map lock is only held to find or insert a slot. The cache holds at
//! most `capacity` slots and evicts the least recently used one (an O(n) scan, only on a
//! miss with a full cache, which is cheap next to opening a file).

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The one file a task is currently appending to: the head (segment 0) or its newest tail
/// segment. Writes use explicit offsets, so the handle's own cursor does not matter.
#[derive(Debug, Default)]
pub(crate) struct TaskFiles {
    pub(crate) open: Option<(u64, File)>,
}

pub(crate) type Slot = Arc<Mutex<TaskFiles>>;

/// A poisoned slot only means a panic happened mid-append; the state is just a cached
/// handle, and the positions written are decided by the caller's `pos`, so it is safe to
/// keep using.
pub(crate) fn lock(slot: &Slot) -> MutexGuard<'_, TaskFiles> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tick: u64,
    map: HashMap<String, (Slot, u64)>,
}

impl HandleCache {
    pub(crate) fn new(capacity: usize) -> HandleCache {
        HandleCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The task's slot, created if needed. An evicted slot that another thread still holds
    /// keeps working; its file closes when the last holder drops it.
    pub(crate) fn slot(&self, task_id: &str) -> Slot {
        let mut inner = self.inner();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((slot, used)) = inner.map.get_mut(task_id) {
            *used = tick;
            return Arc::clone(slot);
        }
        if inner.map.len() >= self.capacity {
            let lru = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone());
            if let Some(id) = lru {
                inner.map.remove(&id);
            }
        }
        let slot = Slot::default();
        inner
            .map
            .insert(task_id.to_owned(), (Arc::clone(&slot), tick));
        slot
    }

    /// Drops the task's slot from the cache, returning it so the caller can wait for an
    /// in-flight append (by locking it) before touching the files.
    pub(crate) fn take(&self, task_id: &str) -> Option<Slot> {
        self.inner().map.remove(task_id).map(|(slot, _)| slot)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner().map.len()
    }
}
