//! The per-process cache of folded tenant states: a command decides on the cached state and
//! appends expecting its seq, so a fresh entry costs one round trip; a stale one (another
//! process wrote) costs one conflict, whose missed events bring it up to date. Bounded: the
//! least recently used tenant goes first.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use ledger_core::{Position, Seq};
use ledger_domain::TenantState;
use lru::LruCache;
use uuid::Uuid;

/// A tenant's state as this process last saw it.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    /// The folded state.
    pub(crate) state: TenantState,
    /// The stream's seq it stands at.
    pub(crate) seq: Seq,
    /// The global position of the stream's last event.
    pub(crate) position: Position,
}

/// Folded tenant states, at most `capacity`, least recently used evicted first.
#[derive(Debug)]
pub struct StateCache {
    entries: Mutex<LruCache<Uuid, Cached>>,
}

impl StateCache {
    /// A cache of at most `capacity` tenants (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// How many tenants it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when it holds no tenant.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most tenants it holds.
    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }

    /// The tenant's cached state, marking it recently used.
    pub(crate) fn get(&self, tenant: Uuid) -> Option<Cached> {
        self.lock().get(&tenant).cloned()
    }

    /// Keeps the tenant's state, unless the cache already holds a later one.
    pub(crate) fn put(&self, tenant: Uuid, cached: Cached) {
        let mut entries = self.lock();
        match entries.get_mut(&tenant) {
            Some(held) if held.seq > cached.seq => {}
            Some(held) => *held = cached,
            None => {
                entries.put(tenant, cached);
            }
        }
    }

    /// Forgets the tenant.
    pub fn forget(&self, tenant: Uuid) {
        self.lock().pop(&tenant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64) -> Cached {
        Cached {
            state: TenantState::default(),
            seq: Seq(seq),
            position: Position(seq),
        }
    }

    #[test]
    fn the_least_recently_used_tenant_goes_first() {
        let cache = StateCache::new(2);
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        cache.put(a, at(1));
        cache.put(b, at(1));
        assert!(cache.get(a).is_some());
        cache.put(c, at(1));
        assert!(cache.get(b).is_none(), "b was used least recently");
        assert!(cache.get(a).is_some() && cache.get(c).is_some());
        assert_eq!((cache.len(), cache.capacity()), (2, 2));
        cache.forget(a);
        assert!(cache.get(a).is_none());
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one() {
        let cache = StateCache::new(4);
        let a = Uuid::now_v7();
        cache.put(a, at(5));
        cache.put(a, at(3));
        assert_eq!(cache.get(a).unwrap().seq, Seq(5));
        cache.put(a, at(6));
        assert_eq!(cache.get(a).unwrap().seq, Seq(6));
        assert_eq!(StateCache::new(0).capacity(), 1);
    }
}
