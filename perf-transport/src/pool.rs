//! The segment pool: pre-faulted shared-memory segments in size classes, reused across transfers, within a byte budget.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use perf_core::{PlatformShm, SegmentId, ShmError, ShmSegment, ZeroCopyAvailability};

/// Smallest size class, in bytes.
pub const MIN_CLASS: usize = 64 << 10;
/// Number of size classes: 64 KiB, 128 KiB, ... up to 1 GiB.
pub const CLASSES: usize = 15;

/// How a [`SegmentPool`] is sized; the pool of shared-memory segments, not a pool of policies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentPoolConfig {
    /// The largest payload served from a pooled class; larger ones get a
    /// one-off segment. A power of two from 64 KiB to 1 GiB.
    pub max_class: usize,
    /// Bytes of shared memory the pool may hold at once, pooled and one-off.
    pub budget_bytes: u64,
    /// Free segments kept per class; more are released when returned.
    pub max_free_per_class: usize,
    /// Memory use (0..1) above which the budget shrinks, down to a quarter
    /// when memory is full (R8.3).
    pub pressure_high: f64,
}

impl Default for SegmentPoolConfig {
    fn default() -> Self {
        SegmentPoolConfig {
            max_class: 256 << 20,
            budget_bytes: 1 << 30,
            max_free_per_class: 4,
            pressure_high: 0.8,
        }
    }
}

/// Why a segment could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The budget does not allow a segment of this size now.
    #[error("shared-memory budget exhausted: {wanted} bytes wanted, {held} of {budget} held")]
    Exhausted {
        /// Bytes the segment would take.
        wanted: u64,
        /// Bytes held now.
        held: u64,
        /// The budget.
        budget: u64,
    },
    /// The platform refused to create the segment.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The pool configuration is invalid.
    #[error("invalid pool configuration: {0}")]
    Config(String),
}

/// Counters of what the pool did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Leases served from a free, pre-faulted segment.
    pub reused: u64,
    /// Pooled segments created (and pre-faulted).
    pub created: u64,
    /// One-off segments for payloads above the largest class.
    pub one_off: u64,
    /// Requests refused for the budget.
    pub refused: u64,
    /// Segments released to stay within the budget or the free limit.
    pub released: u64,
    /// Free segments found resized by another process, released instead of reused.
    pub damaged: u64,
    /// Bytes held now.
    pub held_bytes: u64,
    /// The budget now.
    pub budget_bytes: u64,
    /// Acquisitions that found the budget busy and waited for a segment to come back.
    pub waited: u64,
    /// Of those, the ones that got a segment within their wait.
    pub waited_served: u64,
}

impl PoolStats {
    /// Segments alive now, leased or free: every one made (pooled or one-off) less every one
    /// released.
    pub fn segments(&self) -> u64 {
        (self.created + self.one_off).saturating_sub(self.released)
    }
}

struct Inner {
    shm: Arc<dyn PlatformShm>,
    config: SegmentPoolConfig,
    base_budget: AtomicU64,
    budget: AtomicU64,
    held: AtomicU64,
    free_counts: [AtomicU32; CLASSES],
    free: Mutex<Vec<Vec<Box<dyn ShmSegment>>>>,
    reused: AtomicU64,
    created: AtomicU64,
    one_off: AtomicU64,
    refused: AtomicU64,
    released: AtomicU64,
    damaged: AtomicU64,
    /// Leases that waited for a segment to come back, and those that got one.
    waited: AtomicU64,
    waited_served: AtomicU64,
    /// Woken whenever held bytes go down: a segment was returned or released.
    returned: Notify,
}

/// A pool of shared-memory segments; cheap to clone, shared by clones.
#[derive(Clone)]
pub struct SegmentPool(Arc<Inner>);

impl std::fmt::Debug for SegmentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentPool")
            .field("backend", &self.0.shm.name())
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The class whose segments hold `size` bytes, if one does.
fn class_of(size: usize, max_class: usize) -> Option<usize> {
    let bytes = size.max(MIN_CLASS).checked_next_power_of_two()?;
    (bytes <= max_class).then(|| (bytes / MIN_CLASS).trailing_zeros() as usize)
}

const fn class_bytes(class: usize) -> usize {
    MIN_CLASS << class
}

/// Rounds a one-off segment up to whole 2 MiB, so huge pages can back it.
fn one_off_bytes(size: usize) -> usize {
    const HUGE: usize = 2 << 20;
    size.max(1).div_ceil(HUGE).saturating_mul(HUGE)
}

impl SegmentPool {
    /// A pool over `shm`; segments are created on first need.
    pub fn new(
        shm: Arc<dyn PlatformShm>,
        config: SegmentPoolConfig,
    ) -> Result<SegmentPool, PoolError> {
        let max = config.max_class;
        if !(0.0..1.0).contains(&config.pressure_high) {
            return Err(PoolError::Config(format!(
                "pressure_high {}, expected a fraction from 0 to below 1",
                config.pressure_high
            )));
        }
        if !max.is_power_of_two() || max < MIN_CLASS || max > class_bytes(CLASSES - 1) {
            return Err(PoolError::Config(format!(
                "max_class {max}, expected a power of two from {MIN_CLASS} to {}",
                class_bytes(CLASSES - 1)
            )));
        }
        Ok(SegmentPool(Arc::new(Inner {
            shm,
            config,
            base_budget: AtomicU64::new(config.budget_bytes),
            budget: AtomicU64::new(config.budget_bytes),
            held: AtomicU64::new(0),
            free_counts: Default::default(),
            free: Mutex::new((0..CLASSES).map(|_| Vec::new()).collect()),
            reused: AtomicU64::new(0),
            created: AtomicU64::new(0),
            one_off: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            released: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            waited_served: AtomicU64::new(0),
            returned: Notify::new(),
        })))
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.0.shm.name()
    }

    /// What a transfer of `size` bytes would get now, without a lock: a free
    /// pre-faulted segment, a new one (which pays page faults), or nothing.
    ///
    /// A budget that is only busy (the segment fits the budget, but segments
    /// lent to transfers in flight hold it now) counts as `Fresh`: those
    /// segments come back within a transfer's time, and
    /// [`SegmentPool::acquire_within`] waits for one. `Unavailable` means the
    /// segment can never fit the budget as it stands now.
    pub fn availability(&self, size: u64) -> ZeroCopyAvailability {
        let inner = &self.0;
        let Ok(size) = usize::try_from(size) else {
            return ZeroCopyAvailability::Unavailable;
        };
        let wanted = match class_of(size, inner.config.max_class) {
            Some(c) if inner.free_counts[c].load(Ordering::Acquire) > 0 => {
                return ZeroCopyAvailability::Pooled;
            }
            Some(c) => class_bytes(c),
            None => one_off_bytes(size),
        } as u64;
        if wanted <= inner.budget.load(Ordering::Acquire) {
            ZeroCopyAvailability::Fresh
        } else {
            ZeroCopyAvailability::Unavailable
        }
    }

    /// As [`SegmentPool::acquire`], but when the budget is only busy (the
    /// segment fits it, but lent segments hold it now), waits up to `wait` for
    /// segments to come back instead of refusing at once.
    pub async fn acquire_within(&self, size: usize, wait: Duration) -> Result<Lease, PoolError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut waited = false;
        loop {
            // Registered before the attempt, so a return between the attempt
            // and the wait still wakes this one.
            let returned = self.0.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            match self.acquire(size) {
                Ok(lease) => {
                    if waited {
                        self.0.waited_served.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(lease);
                }
                Err(PoolError::Exhausted { wanted, budget, .. }) if wanted <= budget => {
                    if !waited {
                        waited = true;
                        self.0.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    if tokio::time::timeout_at(deadline, returned).await.is_err() {
                        // One last try: the wait may have ended just as a segment came back.
                        return self.acquire(size);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A writable segment of at least `size` bytes, lent until the lease drops.
    ///
    /// This is also the loan path: a producer can serialize straight into
    /// [`Lease::as_mut_slice`] and send the lease without any copy.
    pub fn acquire(&self, size: usize) -> Result<Lease, PoolError> {
        let inner = &self.0;
        let class = class_of(size, inner.config.max_class);
        if let Some(c) = class
            && let Some(segment) = lock(&inner.free)[c].pop()
        {
            inner.free_counts[c].fetch_sub(1, Ordering::AcqRel);
            // A segment another process resized would fault when written: it is not reused.
            if segment.check_intact().is_ok() {
                inner.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(Lease {
                    segment: Some(segment),
                    class,
                    kind: LeaseKind::Reused,
                    pool: self.clone(),
                });
            }
            inner.damaged.fetch_add(1, Ordering::Relaxed);
            self.destroy(segment);
        }
        let bytes = class.map_or_else(|| one_off_bytes(size), class_bytes);
        self.reserve(bytes as u64)?;
        let made = self.make(bytes, class.is_some());
        let segment = match made {
            Ok(s) => s,
            Err(e) => {
                inner.held.fetch_sub(bytes as u64, Ordering::AcqRel);
                return Err(e.into());
            }
        };
        let kind = if class.is_some() {
            inner.created.fetch_add(1, Ordering::Relaxed);
            LeaseKind::Created
        } else {
            inner.one_off.fetch_add(1, Ordering::Relaxed);
            LeaseKind::OneOff
        };
        Ok(Lease {
            segment: Some(segment),
            class,
            kind,
            pool: self.clone(),
        })
    }

    fn make(&self, bytes: usize, prefault: bool) -> Result<Box<dyn ShmSegment>, ShmError> {
        let shm = &self.0.shm;
        let mut segment = shm.create(bytes)?;
        // A worker maps the whole segment; sealing keeps it from shrinking under it.
        match shm.seal(segment.as_mut()) {
            Ok(()) | Err(ShmError::Unsupported(_) | ShmError::SealUnsupported(_)) => {}
            Err(e) => return Err(e),
        }
        if prefault {
            segment.prefault()?;
        }
        Ok(segment)
    }

    /// Counts `bytes` as held, releasing free segments of other classes when
    /// that makes room; refuses past the budget.
    fn reserve(&self, bytes: u64) -> Result<(), PoolError> {
        let inner = &self.0;
        loop {
            let held = inner.held.load(Ordering::Acquire);
            let budget = inner.budget.load(Ordering::Acquire);
            if held.saturating_add(bytes) <= budget {
                if inner
                    .held
                    .compare_exchange(held, held + bytes, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if !self.release_one_free() {
                inner.refused.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Exhausted {
                    wanted: bytes,
                    held,
                    budget,
                });
            }
        }
    }

    /// Releases the largest free segment; false when none is free.
    fn release_one_free(&self) -> bool {
        let inner = &self.0;
        let mut free = lock(&inner.free);
        let Some(c) = (0..CLASSES).rev().find(|c| !free[*c].is_empty()) else {
            return false;
        };
        let segment = free[c].pop();
        inner.free_counts[c].fetch_sub(1, Ordering::AcqRel);
        drop(free);
        if let Some(s) = segment {
            self.destroy(s);
        }
        true
    }

    fn destroy(&self, segment: Box<dyn ShmSegment>) {
        let inner = &self.0;
        let id: SegmentId = segment.id().clone();
        let bytes = segment.len() as u64;
        drop(segment);
        // Memory files die with their last mapping; named segments need their
        // name removed. A failure here leaves a name the next start sweeps.
        let _ = inner.shm.unlink(&id);
        inner.held.fetch_sub(bytes, Ordering::AcqRel);
        inner.released.fetch_add(1, Ordering::Relaxed);
        inner.returned.notify_waiters();
    }

    fn give_back(&self, segment: Box<dyn ShmSegment>, class: Option<usize>) {
        let inner = &self.0;
        let within_budget =
            inner.held.load(Ordering::Acquire) <= inner.budget.load(Ordering::Acquire);
        if let (Some(c), true) = (class, within_budget) {
            let mut free = lock(&inner.free);
            if free[c].len() < inner.config.max_free_per_class {
                free[c].push(segment);
                inner.free_counts[c].fetch_add(1, Ordering::AcqRel);
                drop(free);
                inner.returned.notify_waiters();
                return;
            }
        }
        self.destroy(segment);
    }

    /// Changes the budget; free segments are released until the pool holds
    /// no more than the new budget.
    pub fn set_budget(&self, bytes: u64) {
        self.0.base_budget.store(bytes, Ordering::Release);
        self.apply_budget(bytes);
    }

    fn apply_budget(&self, bytes: u64) {
        self.0.budget.store(bytes, Ordering::Release);
        while self.0.held.load(Ordering::Acquire) > bytes && self.release_one_free() {}
    }

    /// Follows memory pressure (R8.3): the whole budget up to
    /// `pressure_high` memory use, shrinking linearly to a quarter of it when
    /// memory is full, and growing back as pressure eases.
    pub fn follow_pressure(&self, memory_used: f64) {
        let high = self.0.config.pressure_high;
        let excess = ((memory_used - high) / (1.0 - high)).clamp(0.0, 1.0);
        let base = self.0.base_budget.load(Ordering::Acquire);
        let target = (base as f64 * (1.0 - 0.75 * excess)) as u64;
        if target != self.0.budget.load(Ordering::Acquire) {
            self.apply_budget(target);
        }
    }

    /// Creates and pre-faults one free segment for each of `sizes`, so the
    /// first transfers of those sizes pay no page faults.
    pub fn warm(&self, sizes: &[usize]) -> Result<(), PoolError> {
        let leases: Vec<Lease> = sizes
            .iter()
            .map(|s| self.acquire(*s))
            .collect::<Result<_, _>>()?;
        drop(leases);
        Ok(())
    }

    /// What the pool did since it started.
    pub fn stats(&self) -> PoolStats {
        let i = &self.0;
        PoolStats {
            reused: i.reused.load(Ordering::Relaxed),
            created: i.created.load(Ordering::Relaxed),
            one_off: i.one_off.load(Ordering::Relaxed),
            refused: i.refused.load(Ordering::Relaxed),
            released: i.released.load(Ordering::Relaxed),
            damaged: i.damaged.load(Ordering::Relaxed),
            held_bytes: i.held.load(Ordering::Relaxed),
            budget_bytes: i.budget.load(Ordering::Relaxed),
            waited: i.waited.load(Ordering::Relaxed),
            waited_served: i.waited_served.load(Ordering::Relaxed),
        }
    }
}

/// Where a lease's segment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// A free pre-faulted segment, reused.
    Reused,
    /// A pooled segment created (and pre-faulted) for this lease.
    Created,
    /// A one-off segment for a payload above the largest class.
    OneOff,
}

/// A segment lent by the pool; it goes back (or is released) when dropped.
pub struct Lease {
    segment: Option<Box<dyn ShmSegment>>,
    class: Option<usize>,
    kind: LeaseKind,
    pool: SegmentPool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id())
            .field("len", &self.len())
            .field("kind", &self.kind)
            .finish()
    }
}

impl Lease {
    fn segment(&self) -> &dyn ShmSegment {
        self.segment
            .as_deref()
            .expect("a lease holds its segment until dropped")
    }

    /// The segment's identity, for a reference.
    pub fn id(&self) -> &SegmentId {
        self.segment().id()
    }

    /// The segment file's inode.
    pub fn inode(&self) -> u64 {
        self.segment().inode()
    }

    /// The segment's length (at least the size asked for).
    pub fn len(&self) -> usize {
        self.segment().len()
    }

    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the segment came from.
    pub fn kind(&self) -> LeaseKind {
        self.kind
    }

    /// The segment's bytes, for the producer to write into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.segment
            .as_deref_mut()
            .expect("a lease holds its segment until dropped")
            .as_mut_slice()
    }

    /// The segment's bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.segment().as_slice()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(segment) = self.segment.take() {
            self.pool.give_back(segment, self.class);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::ShmView;
    use std::sync::atomic::AtomicUsize;

    /// A heap-backed backend that counts what it is asked to do.
    #[derive(Default)]
    struct Heap {
        created: AtomicUsize,
        unlinked: AtomicUsize,
        fail_over: Option<usize>,
    }

    struct HeapSegment(SegmentId, Vec<u8>);

    impl ShmSegment for HeapSegment {
        fn id(&self) -> &SegmentId {
            &self.0
        }
        fn inode(&self) -> u64 {
            1
        }
        fn len(&self) -> usize {
            self.1.len()
        }
        fn as_slice(&self) -> &[u8] {
            &self.1
        }
        fn as_mut_slice(&mut self) -> &mut [u8] {
            &mut self.1
        }
    }

    impl PlatformShm for Heap {
        fn name(&self) -> &'static str {
            "heap"
        }
        fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
            if self.fail_over.is_some_and(|max| len > max) {
                return Err(ShmError::NoSpace(len as u64));
            }
            let n = self.created.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(HeapSegment(
                SegmentId::Named(format!("heap-{n}")),
                vec![0; len],
            )))
        }
        fn open(&self, id: &SegmentId, _len: usize) -> Result<Box<dyn ShmView>, ShmError> {
            Err(ShmError::NotFound(id.to_string()))
        }
        fn seal(&self, _s: &mut dyn ShmSegment) -> Result<(), ShmError> {
            Ok(())
        }
        fn unlink(&self, _id: &SegmentId) -> Result<(), ShmError> {
            self.unlinked.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    const MIB: usize = 1 << 20;

    fn pool(budget: u64) -> (SegmentPool, Arc<Heap>) {
        let heap = Arc::new(Heap::default());
        let config = SegmentPoolConfig {
            max_class: 64 * MIB,
            budget_bytes: budget,
            max_free_per_class: 2,
            pressure_high: 0.8,
        };
        (SegmentPool::new(heap.clone(), config).unwrap(), heap)
    }

    #[test]
    fn classes_are_powers_of_two_from_64_kib() {
        assert_eq!(class_of(1, 1 << 30), Some(0));
        assert_eq!(class_of(MIN_CLASS, 1 << 30), Some(0));
        assert_eq!(class_of(MIN_CLASS + 1, 1 << 30), Some(1));
        assert_eq!(class_of(MIB, 1 << 30), Some(4));
        assert_eq!(class_of(1 << 30, 1 << 30), Some(14));
        assert_eq!(class_of(64 * MIB + 1, 64 * MIB), None);
        assert_eq!(one_off_bytes(65 * MIB), 66 * MIB);
    }

    #[test]
    fn segments_are_reused_and_availability_follows() {
        let (p, heap) = pool(256 * MIB as u64);
        assert_eq!(p.availability(MIB as u64), ZeroCopyAvailability::Fresh);
        let mut lease = p.acquire(MIB).unwrap();
        assert_eq!(lease.kind(), LeaseKind::Created);
        lease.as_mut_slice()[..5].copy_from_slice(b"hello");
        let id = lease.id().clone();
        drop(lease);
        assert_eq!(p.availability(MIB as u64), ZeroCopyAvailability::Pooled);
        let again = p.acquire(MIB - 10).unwrap();
        assert_eq!((again.kind(), again.id()), (LeaseKind::Reused, &id));
        assert_eq!(&again.as_slice()[..5], b"hello");
        assert_eq!(heap.created.load(Ordering::Relaxed), 1);
        let s = p.stats();
        assert_eq!((s.created, s.reused, s.held_bytes), (1, 1, MIB as u64));
    }

    #[test]
    fn the_budget_bounds_what_is_held_and_refuses_past_it() {
        let (p, _) = pool(3 * MIB as u64);
        let a = p.acquire(2 * MIB).unwrap();
        // Busy, not spent: the lent segment comes back.
        assert_eq!(p.availability(2 * MIB as u64), ZeroCopyAvailability::Fresh);
        assert_eq!(
            p.availability(4 * MIB as u64),
            ZeroCopyAvailability::Unavailable
        );
        let err = p.acquire(2 * MIB).unwrap_err();
        assert!(matches!(err, PoolError::Exhausted { .. }), "{err}");
        assert_eq!(p.stats().refused, 1);
        drop(a);
        // The free 2 MiB segment is released to make room for a 1 MiB one... and more.
        let b = p.acquire(MIB).unwrap();
        let c = p.acquire(2 * MIB).unwrap();
        assert_eq!(c.kind(), LeaseKind::Reused);
        assert!(p.stats().held_bytes <= 3 * MIB as u64);
        drop((b, c));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_budget_makes_an_acquisition_wait_for_a_segment_to_come_back() {
        let (p, _) = pool(3 * MIB as u64);
        let held = p.acquire(2 * MIB).unwrap();
        let returner = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        let start = tokio::time::Instant::now();
        let lease = p
            .acquire_within(2 * MIB, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(lease.kind(), LeaseKind::Reused);
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        returner.await.unwrap();
        let s = p.stats();
        assert_eq!((s.waited, s.waited_served, s.refused), (1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_segment_is_bounded_and_a_segment_that_never_fits_is_refused_at_once() {
        let (p, _) = pool(3 * MIB as u64);
        let _held = p.acquire(2 * MIB).unwrap();
        let start = tokio::time::Instant::now();
        let err = p
            .acquire_within(2 * MIB, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, PoolError::Exhausted { .. }), "{err}");
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let start = tokio::time::Instant::now();
        let err = p
            .acquire_within(4 * MIB, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, PoolError::Exhausted { .. }), "{err}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        let s = p.stats();
        assert_eq!((s.waited, s.waited_served), (1, 0));
    }

    #[test]
    fn a_lower_budget_releases_free_segments() {
        let (p, heap) = pool(64 * MIB as u64);
        p.warm(&[MIB, 2 * MIB, 4 * MIB]).unwrap();
        assert_eq!(p.stats().held_bytes, 7 * MIB as u64);
        p.set_budget(2 * MIB as u64);
        assert!(p.stats().held_bytes <= 2 * MIB as u64);
        assert!(heap.unlinked.load(Ordering::Relaxed) >= 2);
        assert_eq!(
            p.availability(4 * MIB as u64),
            ZeroCopyAvailability::Unavailable
        );
    }

    #[test]
    fn memory_pressure_shrinks_the_budget_and_relief_restores_it() {
        let (p, _) = pool(64 * MIB as u64);
        p.warm(&[8 * MIB, 16 * MIB, 32 * MIB]).unwrap();
        p.follow_pressure(0.5);
        assert_eq!(p.stats().budget_bytes, 64 * MIB as u64);
        p.follow_pressure(0.9);
        assert_eq!(p.stats().budget_bytes, 40 * MIB as u64);
        assert!(p.stats().held_bytes <= 40 * MIB as u64);
        p.follow_pressure(1.0);
        assert_eq!(p.stats().budget_bytes, 16 * MIB as u64);
        assert_eq!(
            p.availability(32 * MIB as u64),
            ZeroCopyAvailability::Unavailable
        );
        p.follow_pressure(0.2);
        assert_eq!(p.stats().budget_bytes, 64 * MIB as u64);
        assert_eq!(p.availability(32 * MIB as u64), ZeroCopyAvailability::Fresh);
    }

    #[test]
    fn large_payloads_get_one_off_segments_that_are_not_kept() {
        let (p, heap) = pool(512 * MIB as u64);
        let big = p.acquire(100 * MIB).unwrap();
        assert_eq!(big.kind(), LeaseKind::OneOff);
        assert!(big.len() >= 100 * MIB);
        drop(big);
        assert_eq!(p.stats().held_bytes, 0);
        assert_eq!(heap.unlinked.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failing_backend_gives_an_error_and_holds_nothing() {
        let heap = Arc::new(Heap {
            fail_over: Some(MIB),
            ..Heap::default()
        });
        let p = SegmentPool::new(heap, SegmentPoolConfig::default()).unwrap();
        assert!(matches!(
            p.acquire(4 * MIB),
            Err(PoolError::Shm(ShmError::NoSpace(_)))
        ));
        assert_eq!(p.stats().held_bytes, 0);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let heap: Arc<dyn PlatformShm> = Arc::new(Heap::default());
        for max_class in [0, 1000, MIN_CLASS / 2, 1 << 31] {
            let config = SegmentPoolConfig {
                max_class,
                ..SegmentPoolConfig::default()
            };
            assert!(
                SegmentPool::new(heap.clone(), config).is_err(),
                "{max_class}"
            );
        }
    }
}
