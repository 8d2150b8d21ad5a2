//! The bounded label sets of the metrics: pool slots, size classes, fallback and failure labels.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use perf_core::config::MAX_POOLS;
use perf_core::{FailureKind, FallbackReason, Name};

/// The label value of the slot that takes every pool that is not configured.
pub const OTHER_POOL: &str = "other";

/// The number of size classes: under 1 KiB, then one class per factor of four up to 1 GiB and
/// over.
pub const SIZE_CLASSES: usize = 12;

/// The `size_class` label values, in order: a payload of class `i` is at least the lower bound
/// and under four times it (the last class has no upper bound).
pub const SIZE_CLASS_LABELS: [&str; SIZE_CLASSES] = [
    "0-1KiB",
    "1KiB-4KiB",
    "4KiB-16KiB",
    "16KiB-64KiB",
    "64KiB-256KiB",
    "256KiB-1MiB",
    "1MiB-4MiB",
    "4MiB-16MiB",
    "16MiB-64MiB",
    "64MiB-256MiB",
    "256MiB-1GiB",
    "1GiB+",
];

/// The size class of a payload of `size` bytes, from `floor(log2(size))`.
pub const fn size_class(size: u64) -> usize {
    if size < 1024 {
        return 0;
    }
    let log2 = 63 - size.leading_zeros() as usize;
    let class = (log2 - 10) / 2 + 1;
    if class < SIZE_CLASSES {
        class
    } else {
        SIZE_CLASSES - 1
    }
}

/// Every fallback reason, in the order of the per-reason counters.
pub(crate) const FALLBACK_REASONS: [FallbackReason; 5] = [
    FallbackReason::ShmExhausted,
    FallbackReason::ShmError,
    FallbackReason::ReferenceRefused,
    FallbackReason::Timeout,
    FallbackReason::WorkerError,
];

/// A dense index of a fallback reason.
pub(crate) const fn fallback_index(reason: FallbackReason) -> usize {
    match reason {
        FallbackReason::ShmExhausted => 0,
        FallbackReason::ShmError => 1,
        FallbackReason::ReferenceRefused => 2,
        FallbackReason::Timeout => 3,
        FallbackReason::WorkerError => 4,
    }
}

/// The label value of a fallback reason, as in records.
pub(crate) const fn fallback_label(reason: FallbackReason) -> &'static str {
    match reason {
        FallbackReason::ShmExhausted => "shm_exhausted",
        FallbackReason::ShmError => "shm_error",
        FallbackReason::ReferenceRefused => "reference_refused",
        FallbackReason::Timeout => "timeout",
        FallbackReason::WorkerError => "worker_error",
    }
}

/// A dense index of a failure kind, in the order of [`FailureKind::ALL`].
pub(crate) const fn failure_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Unavailable => 0,
        FailureKind::Timeout => 1,
        FailureKind::Refused => 2,
        FailureKind::Corrupted => 3,
        FailureKind::TooLarge => 4,
        FailureKind::Internal => 5,
        FailureKind::Handler => 6,
    }
}

/// The pools that have a slot of their own (up to [`MAX_POOLS`], in the order they came), and
/// the `other` slot after them.
///
/// A lookup hashes the name into a fixed open-addressing table of atomics: no lock, no
/// allocation. A pool is added (when a reload configures it) under a lock that lookups never
/// take: its name is set before its table entry is published.
#[derive(Debug)]
pub(crate) struct PoolSlots {
    names: Box<[OnceLock<Name>]>,
    /// How many slots are taken.
    used: AtomicUsize,
    /// Slot index + 1 per table entry; 0 is empty.
    table: Box<[AtomicU8]>,
    adding: Mutex<()>,
}

/// Table entries: a power of two at least twice [`MAX_POOLS`], so probes stay short.
const TABLE: usize = 256;
const _: () = assert!(TABLE >= 2 * MAX_POOLS && MAX_POOLS < u8::MAX as usize);

impl PoolSlots {
    /// Slots for `pools` (duplicates are kept once), in the order given. A pool named like the
    /// `other` slot is counted in it, so that no two series share a label set.
    pub(crate) fn new(pools: &[Name]) -> Result<PoolSlots, crate::TelemetryError> {
        let mut distinct: Vec<Name> = Vec::new();
        for p in pools {
            if !distinct.contains(p) && p.as_str() != OTHER_POOL {
                distinct.push(*p);
            }
        }
        if distinct.len() > MAX_POOLS {
            return Err(crate::TelemetryError::TooManyPools {
                got: distinct.len(),
                max: MAX_POOLS,
            });
        }
        let slots = PoolSlots {
            names: (0..MAX_POOLS).map(|_| OnceLock::new()).collect(),
            used: AtomicUsize::new(0),
            table: (0..TABLE).map(|_| AtomicU8::new(0)).collect(),
            adding: Mutex::new(()),
        };
        for p in distinct {
            slots.add(p);
        }
        Ok(slots)
    }

    /// Gives `pool` a slot of its own unless it has one; false when it cannot have one (it is
    /// named `other`, or all [`MAX_POOLS`] slots are taken) and stays counted under `other`.
    pub(crate) fn add(&self, pool: Name) -> bool {
        if pool.as_str() == OTHER_POOL {
            return false;
        }
        let _one_at_a_time = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        if self.slot(&pool) != self.other() {
            return true;
        }
        let n = self.used.load(Ordering::Relaxed);
        if n == MAX_POOLS {
            return false;
        }
        let _ = self.names[n].set(pool);
        let mut i = hash(&pool) as usize & (TABLE - 1);
        while self.table[i].load(Ordering::Relaxed) != 0 {
            i = (i + 1) & (TABLE - 1);
        }
        self.table[i].store((n + 1) as u8, Ordering::Release);
        self.used.store(n + 1, Ordering::Release);
        true
    }

    /// The number of slots there is room for, `other` included: the size of the tables.
    pub(crate) fn capacity(&self) -> usize {
        MAX_POOLS + 1
    }

    /// The index of the `other` slot.
    pub(crate) fn other(&self) -> usize {
        MAX_POOLS
    }

    /// The slots taken, in the order they were, then `other`.
    pub(crate) fn in_use(&self) -> impl Iterator<Item = usize> + use<> {
        (0..self.used.load(Ordering::Acquire)).chain(std::iter::once(MAX_POOLS))
    }

    /// The slot of `pool`: its own when it has one, else `other`.
    #[inline]
    pub(crate) fn slot(&self, pool: &Name) -> usize {
        let mut i = hash(pool) as usize & (TABLE - 1);
        loop {
            match self.table[i].load(Ordering::Acquire) {
                0 => return self.other(),
                s if self.names[s as usize - 1].get() == Some(pool) => return s as usize - 1,
                _ => i = (i + 1) & (TABLE - 1),
            }
        }
    }

    /// The label value of slot `slot`.
    pub(crate) fn label(&self, slot: usize) -> &str {
        self.names
            .get(slot)
            .and_then(OnceLock::get)
            .map_or(OTHER_POOL, Name::as_str)
    }
}

/// A fast hash of a name's bytes, eight at a time.
#[inline]
fn hash(name: &Name) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in name.as_str().as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn size_classes_follow_powers_of_four_from_one_kib() {
        let cases = [
            (0, 0),
            (1023, 0),
            (1024, 1),
            (4095, 1),
            (4096, 2),
            (1 << 20, 6),
            ((4 << 20) - 1, 6),
            ((1 << 30) - 1, 10),
            (1 << 30, 11),
            (u64::MAX, 11),
        ];
        for (size, class) in cases {
            assert_eq!(size_class(size), class, "size {size}");
        }
        assert_eq!(SIZE_CLASS_LABELS[size_class(1 << 20)], "1MiB-4MiB");
    }

    #[test]
    fn configured_pools_get_their_own_slot_and_others_share_one() {
        let pools: Vec<Name> = (0..MAX_POOLS).map(|i| name(&format!("p{i}"))).collect();
        let slots = PoolSlots::new(&pools).unwrap();
        assert_eq!(slots.in_use().count(), MAX_POOLS + 1);
        for (i, p) in pools.iter().enumerate() {
            assert_eq!(slots.slot(p), i);
            assert_eq!(slots.label(i), p.as_str());
        }
        assert_eq!(slots.slot(&name("unknown")), slots.other());
        assert_eq!(slots.label(slots.other()), OTHER_POOL);
    }

    #[test]
    fn a_pool_named_other_is_counted_in_the_other_slot() {
        let slots = PoolSlots::new(&[name("a"), name(OTHER_POOL)]).unwrap();
        assert_eq!(slots.in_use().count(), 2, "a and other");
        assert!(!slots.add(name(OTHER_POOL)));
        assert_eq!(slots.slot(&name(OTHER_POOL)), slots.other());
        assert_eq!(slots.label(slots.other()), OTHER_POOL);
    }

    #[test]
    fn duplicates_are_kept_once_and_too_many_pools_are_refused() {
        let slots = PoolSlots::new(&[name("a"), name("b"), name("a")]).unwrap();
        assert_eq!(slots.in_use().count(), 3);
        assert_eq!(slots.slot(&name("b")), 1);
        let many: Vec<Name> = (0..=MAX_POOLS).map(|i| name(&format!("p{i}"))).collect();
        assert!(matches!(
            PoolSlots::new(&many),
            Err(crate::TelemetryError::TooManyPools { got, max }) if got == MAX_POOLS + 1 && max == MAX_POOLS
        ));
    }

    #[test]
    fn a_pool_added_later_gets_the_next_slot_until_they_run_out() {
        let slots = PoolSlots::new(&[name("a")]).unwrap();
        assert_eq!(slots.slot(&name("b")), slots.other());
        assert!(slots.add(name("b")));
        assert!(slots.add(name("b")), "twice is once");
        assert_eq!(slots.slot(&name("b")), 1);
        assert_eq!(slots.label(1), "b");
        assert_eq!(slots.in_use().collect::<Vec<_>>(), [0, 1, slots.other()]);
        for i in 2..MAX_POOLS {
            assert!(slots.add(name(&format!("p{i}"))));
        }
        assert!(!slots.add(name("late")), "no slot is left");
        assert_eq!(slots.slot(&name("late")), slots.other());
        assert_eq!(slots.in_use().count(), MAX_POOLS + 1);
    }

    #[test]
    fn every_fallback_reason_and_failure_kind_has_its_own_index() {
        for (i, r) in FALLBACK_REASONS.iter().enumerate() {
            assert_eq!(fallback_index(*r), i);
            let json = format!("\"{}\"", fallback_label(*r));
            assert_eq!(serde_json::to_string(r).unwrap(), json, "as in records");
        }
        for (i, k) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(failure_index(*k), i);
        }
    }
}
