//! Where each cache is kept once created, and the process-wide list of caches.

use std::any::{Any, TypeId};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::stats::CacheInfo;

/// A cache as the registry sees it: a name and statistics.
pub trait Registered: Send + Sync {
    /// The cache's name.
    fn name(&self) -> &str;
    /// A snapshot of its statistics.
    fn info(&self) -> CacheInfo;
    /// Its statistics since it was created, not reset by `cache_clear` (for metrics, which
    /// never go down).
    fn lifetime_info(&self) -> CacheInfo {
        self.info()
    }
    /// Where its hits come from: `"local"` (this process's memory) or `"remote"`.
    fn level(&self) -> &'static str {
        "local"
    }
}

impl<K, S, const N: usize, B> Registered for crate::cache::Cache<K, S, N, B>
where
    K: crate::key::KeyPart,
    S: crate::key::CachedValue,
    B: crate::backend::Backend<K, crate::cache::Entry<S, N>>,
{
    fn name(&self) -> &str {
        self.config().name
    }

    fn info(&self) -> CacheInfo {
        crate::cache::Cache::info(self)
    }

    fn lifetime_info(&self) -> CacheInfo {
        self.info_since(crate::stats::Since::Start)
    }
}

/// One line of [`caches()`]: a cache's name and statistics. With the `serde` feature it
/// serializes as `{"name": ..., "info": {...}}` (see [`CacheInfo`]'s fields).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CacheReport {
    /// The cache's name (`module::function` unless `name = "..."` was given).
    pub name: String,
    /// Its statistics.
    pub info: CacheInfo,
}

static REGISTRY: Mutex<Vec<&'static dyn Registered>> = Mutex::new(Vec::new());

/// Every cache of the process that has been created, with its statistics, sorted by name: the
/// data for a stats endpoint.
///
/// A cache is created on the first call of its function or of one of its helpers
/// (`cache_info()` included), so a function never called yet is not listed.
///
/// ```
/// #[cachemere::cached(name = "doc-registry-square")]
/// fn square(x: u64) -> u64 { x * x }
///
/// square(4);
/// let report = cachemere::caches();
/// let line = report.iter().find(|r| r.name == "doc-registry-square").unwrap();
/// assert_eq!(line.info.misses, 1);
/// ```
pub fn caches() -> Vec<CacheReport> {
    // Statistics are read outside the lock: a custom backend's `len()` is user code.
    let registered = registered();
    let mut reports: Vec<CacheReport> = registered
        .iter()
        .map(|cache| CacheReport {
            name: cache.name().to_owned(),
            info: cache.info(),
        })
        .collect();
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    reports
}

/// Every cache created so far (a copy of the list: read their statistics outside the lock).
pub(crate) fn registered() -> Vec<&'static dyn Registered> {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

type AnyCache = dyn Any + Send + Sync;

/// The home of one cached function's cache, declared as a `static` by generated code.
///
/// The static's type cannot name the cache's type (a method's key contains `Self`, a custom
/// backend's type is inferred), so the slot holds it type-erased and the typed accessor, where
/// those types are known, downcasts. A method of a generic `impl` has one cache per
/// instantiation: the first is the fast path, the others are found by type.
pub struct CacheSlot {
    /// The first cache created here, with its type, checked without a virtual call.
    first: OnceLock<(TypeId, &'static AnyCache)>,
    others: Mutex<Vec<(TypeId, &'static AnyCache)>>,
}

impl CacheSlot {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        CacheSlot {
            first: OnceLock::new(),
            others: Mutex::new(Vec::new()),
        }
    }

    /// The cache in this slot, creating and registering it with `init` on first use.
    ///
    /// `init` is a function pointer so that this code is compiled once per cache type, not once
    /// per cached function.
    #[inline]
    pub fn get_or_init<C>(&'static self, init: fn() -> C) -> &'static C
    where
        C: Registered + Any,
    {
        self.get_or_init_with(init, |init| init())
    }

    /// [`get_or_init`](Self::get_or_init) with `init` given `arg` (a generic accessor passes
    /// the backend constructor its caller named, as a function pointer).
    #[inline]
    pub fn get_or_init_with<A, C>(&'static self, arg: A, init: fn(A) -> C) -> &'static C
    where
        C: Registered + Any,
    {
        if let Some((type_id, cache)) = self.first.get()
            && *type_id == TypeId::of::<C>()
        {
            let cache: *const AnyCache = *cache;
            // SAFETY: `first` is only set from a `&'static C` whose `TypeId` is stored beside it
            // (see `insert`), and the ids are equal, so the pointee is a `C`.
            return unsafe { &*cache.cast::<C>() };
        }
        self.get_or_init_slow_with(arg, init)
    }

    #[cold]
    fn get_or_init_slow_with<A, C>(&'static self, arg: A, init: fn(A) -> C) -> &'static C
    where
        C: Registered + Any,
    {
        if let Some(cache) = self.find::<C>() {
            return cache;
        }
        // Built outside the lock: `init` runs a backend constructor, which may be user code.
        self.insert(init(arg))
    }

    /// Keeps `built` here and registers it, unless another thread's cache of its type won.
    fn insert<C>(&'static self, built: C) -> &'static C
    where
        C: Registered + Any,
    {
        let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have won the race while we built ours; theirs is the one in use.
        if let Some(cache) = self.find_locked::<C>(&others) {
            return cache;
        }
        let cache: &'static C = Box::leak(Box::new(built));
        if self.first.set((TypeId::of::<C>(), cache)).is_err() {
            others.push((TypeId::of::<C>(), cache));
        }
        drop(others);
        REGISTRY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cache);
        cache
    }

    fn find<C: Any>(&'static self) -> Option<&'static C> {
        let others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        self.find_locked(&others)
    }

    fn find_locked<C: Any>(
        &'static self,
        others: &[(TypeId, &'static AnyCache)],
    ) -> Option<&'static C> {
        if let Some(cache) = self.first.get().and_then(|(_, c)| c.downcast_ref::<C>()) {
            return Some(cache);
        }
        others
            .iter()
            .find(|(id, _)| *id == TypeId::of::<C>())
            .and_then(|(_, c)| c.downcast_ref::<C>())
    }
}
