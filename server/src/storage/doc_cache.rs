//! A bounded cache of decoded documents for the merge path, so a document that is pushed to
//! again and again (a case the dispatcher, two departments and the grid worker all work on)
//! is not read back and rebuilt from its snapshot and changes for every push.
//!
//! **Invariant:** an entry is the document exactly as stored at `version` (`docs.last_seq`).
//! An entry is only used after the stored version was read again and matched, so a write by
//! another process (or anything not going through this cache) makes it a miss, never a wrong
//! merge. Entries are taken out while a merge works on them and put back only after its
//! transaction committed: a rolled-back merge leaves no trace here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use automerge::ReadDoc;
use gridsync_core::Document;
use gridsync_proto::DocId;

/// Rough memory of one operation in a loaded Automerge document (the op set, its indexes and
/// the cached records), used to weigh entries: a bound on memory, not an exact figure.
const BYTES_PER_OP: usize = 160;

/// How much the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocCacheLimits {
    /// Most documents held.
    pub max_docs: usize,
    /// Most estimated memory held, in bytes (see [`BYTES_PER_OP`]).
    pub max_bytes: usize,
}

impl Default for DocCacheLimits {
    fn default() -> Self {
        Self {
            max_docs: 4_096,
            max_bytes: 256 << 20,
        }
    }
}

impl DocCacheLimits {
    /// No cache at all.
    pub const OFF: Self = Self {
        max_docs: 0,
        max_bytes: 0,
    };
}

/// A document taken out of the cache, with what the merge needs to know of its stored form.
pub struct CachedDoc {
    /// The decoded document.
    pub doc: Document,
    /// Changes stored after its snapshot.
    pub pending: i64,
    /// Length of its stored form (snapshot and pending changes), for the memory check.
    pub stored_len: usize,
}

struct Entry {
    version: i64,
    tick: u64,
    weight: usize,
    cached: CachedDoc,
}

#[derive(Default)]
struct Inner {
    map: HashMap<DocId, Entry>,
    // Least recently used first.
    order: BTreeMap<u64, DocId>,
    tick: u64,
    weight: usize,
}

/// Counters of the cache's use, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocCacheStats {
    /// Merges that found their document here at the stored version.
    pub hits: u64,
    /// Merges of a stored document that had to read and decode it.
    pub misses: u64,
    /// Documents held now.
    pub docs: usize,
    /// Estimated memory held now, in bytes.
    pub bytes: usize,
}

/// The cache (see the module documentation).
pub struct DocCache {
    limits: DocCacheLimits,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for DocCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocCache")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DocCache {
    /// An empty cache within `limits`.
    pub fn new(limits: DocCacheLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every step below is
        // complete before the next); a poisoned lock is used as it is.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version the cache holds `id` at, if it holds it.
    pub fn version_of(&self, id: DocId) -> Option<i64> {
        self.lock().map.get(&id).map(|e| e.version)
    }

    /// Takes `id` out if it is held at `version` (the version stored now); an entry at any
    /// other version is stale and dropped.
    pub fn take(&self, id: DocId, version: i64) -> Option<CachedDoc> {
        let mut inner = self.lock();
        let entry = inner.map.remove(&id)?;
        inner.order.remove(&entry.tick);
        inner.weight -= entry.weight;
        drop(inner);
        if entry.version == version {
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(entry.cached)
        } else {
            None
        }
    }

    /// Counts a merge of a stored document that was not found here.
    pub fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Puts a document back as committed at `version`, evicting the least recently used
    /// entries beyond the limits (a document heavier than the whole budget is not kept).
    pub fn put(&self, id: DocId, version: i64, mut cached: CachedDoc) {
        let weight = cached.stored_len
            + usize::try_from(cached.doc.automerge().stats().num_ops)
                .unwrap_or(usize::MAX)
                .saturating_mul(BYTES_PER_OP);
        if self.limits.max_docs == 0 || weight > self.limits.max_bytes {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.map.remove(&id) {
            inner.order.remove(&old.tick);
            inner.weight -= old.weight;
        }
        while inner.map.len() >= self.limits.max_docs
            || inner.weight + weight > self.limits.max_bytes
        {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.weight -= e.weight;
            }
        }
        inner.order.insert(tick, id);
        inner.weight += weight;
        inner.map.insert(
            id,
            Entry {
                version,
                tick,
                weight,
                cached,
            },
        );
    }

    /// The cache's counters now.
    pub fn stats(&self) -> DocCacheStats {
        let inner = self.lock();
        DocCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            docs: inner.map.len(),
            bytes: inner.weight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsync_core::records::{Household, Residence};
    use gridsync_proto::{DeviceId, GridCode};

    fn doc() -> Document {
        Document::create(
            DocId::new(),
            GridCode::parse("33010200101001002").expect("grid"),
            DeviceId(uuid::Uuid::from_u128(7)),
            &Household::new("1 号", Residence::Permanent),
        )
        .expect("doc")
    }

    fn cached(doc: Document) -> CachedDoc {
        CachedDoc {
            doc,
            pending: 0,
            stored_len: 100,
        }
    }

    #[test]
    fn an_entry_is_used_only_at_the_version_it_was_stored_at() {
        let cache = DocCache::new(DocCacheLimits::default());
        let d = doc();
        let id = d.id();
        cache.put(id, 7, cached(d));
        assert_eq!(cache.version_of(id), Some(7));
        assert!(
            cache.take(id, 8).is_none(),
            "a stale entry must not be used"
        );
        assert_eq!(cache.version_of(id), None, "a stale entry is dropped");
        let d = doc();
        let id = d.id();
        cache.put(id, 3, cached(d));
        assert_eq!(cache.take(id, 3).map(|c| c.doc.id()), Some(id));
        assert!(
            cache.take(id, 3).is_none(),
            "taken means out: one merge at a time"
        );
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn the_least_recently_used_are_evicted_beyond_the_limits() {
        let cache = DocCache::new(DocCacheLimits {
            max_docs: 3,
            max_bytes: usize::MAX,
        });
        let ids: Vec<DocId> = (0..5)
            .map(|i| {
                let d = doc();
                let id = d.id();
                cache.put(id, i, cached(d));
                id
            })
            .collect();
        let held: Vec<bool> = ids
            .iter()
            .map(|id| cache.version_of(*id).is_some())
            .collect();
        assert_eq!(held, [false, false, true, true, true]);
        assert_eq!(cache.stats().docs, 3);

        let mut one = cached(doc());
        let weight = one.stored_len
            + usize::try_from(one.doc.automerge().stats().num_ops).expect("fits") * BYTES_PER_OP;
        let cache = DocCache::new(DocCacheLimits {
            max_docs: 100,
            max_bytes: weight * 2,
        });
        let (a, b, c) = (doc(), doc(), doc());
        let (ia, ib, ic) = (a.id(), b.id(), c.id());
        cache.put(ia, 1, cached(a));
        cache.put(ib, 1, cached(b));
        cache.put(ic, 1, cached(c));
        assert_eq!(cache.version_of(ia), None);
        assert!(cache.version_of(ib).is_some() && cache.version_of(ic).is_some());
        assert!(cache.stats().bytes <= weight * 2);
    }

    #[test]
    fn an_off_cache_holds_nothing() {
        let cache = DocCache::new(DocCacheLimits::OFF);
        let d = doc();
        let id = d.id();
        cache.put(id, 1, cached(d));
        assert_eq!(cache.version_of(id), None);
    }
}
