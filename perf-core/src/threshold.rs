//! Per-pool thresholds: base x history adjustment x resource factor, logged and persisted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::config::{Adaptation, PoolSettings};
use crate::decision::ThresholdBreakdown;
use crate::name::Name;
use crate::request::{SystemState, Timestamp};
use crate::seams::ThresholdStore;

/// How many threshold changes are kept in memory.
pub const HISTORY_LEN: usize = 1024;

/// An `f64` that can be read and written atomically.
#[derive(Debug)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    /// A new cell holding `v`.
    pub fn new(v: f64) -> AtomicF64 {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }
    /// The current value.
    pub fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
    /// Replaces the value.
    pub fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Release)
    }
}

/// What kind of threshold change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// History moved the threshold.
    Adjust,
    /// The threshold went back to its configured base.
    Reset,
}

/// One logged change of a pool's history adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChange {
    /// The pool.
    pub pool: Name,
    /// When it changed.
    pub at: Timestamp,
    /// Adjustment or reset.
    pub kind: ChangeKind,
    /// The history factor before.
    pub from_factor: f64,
    /// The history factor after.
    pub to_factor: f64,
    /// The threshold before, in bytes (resources at 1.0).
    pub from_bytes: u64,
    /// The threshold after, in bytes (resources at 1.0).
    pub to_bytes: u64,
    /// Why it changed, in words.
    pub reason: String,
    /// The expected gain, as a fraction of mean latency.
    pub expected_gain: f64,
}

/// Why threshold state could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The pool is not configured.
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    /// The requested target is not a usable number.
    #[error("invalid threshold target {0}, expected a positive size")]
    InvalidTarget(String),
    /// Learning is off for the pool, so history may not move its threshold.
    #[error("learning is off for pool {0:?}, its threshold stays at the configured base")]
    LearningOff(String),
    /// The persistent store failed; nothing was changed.
    #[error("threshold store failed: {0}")]
    Store(String),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resource factor: below 1.0 favours zero-copy, above favours gRPC.
///
/// High CPU lowers the threshold (zero-copy saves serialization CPU, R8.4);
/// high memory use lowers it too (zero-copy holds one copy where gRPC holds
/// two, R8.1); little free shared memory raises it, keeping segments for
/// the payloads that gain most.
pub fn resource_factor(base: u64, system: &SystemState, adaptation: &Adaptation) -> f64 {
    let mut f = 1.0;
    if system.cpu_utilization >= adaptation.cpu_high {
        f *= 0.5;
    }
    if system.memory_used >= adaptation.memory_high {
        f *= 0.75;
    }
    if system.shm_free < base.saturating_mul(4) {
        f *= 2.0;
    }
    f
}

/// A proposed threshold move: where to, why, and what it should gain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal<'a> {
    /// The threshold the evidence points to, in bytes.
    pub target: u64,
    /// Why, in words (logged).
    pub reason: &'a str,
    /// The expected gain, as a fraction of mean latency (logged).
    pub expected_gain: f64,
    /// When it is proposed.
    pub at: Timestamp,
}

/// Holds every pool's history adjustment, logs each change and persists it.
///
/// Reads on the decision path are one atomic load per pool; changes take a
/// lock and go to the [`ThresholdStore`] first.
pub struct ThresholdManager {
    factors: Mutex<BTreeMap<Name, Arc<AtomicF64>>>,
    history: Mutex<VecDeque<ThresholdChange>>,
    store: Arc<dyn ThresholdStore>,
}

impl std::fmt::Debug for ThresholdManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThresholdManager")
            .field("factors", &*lock(&self.factors))
            .finish_non_exhaustive()
    }
}

impl ThresholdManager {
    /// A manager restored from `store`: each pool's factor is the last one stored.
    pub fn restore(store: Arc<dyn ThresholdStore>) -> Result<ThresholdManager, ThresholdError> {
        let changes = store.load()?;
        let mut factors = BTreeMap::new();
        for c in &changes {
            if c.to_factor.is_finite() && c.to_factor > 0.0 {
                factors.insert(c.pool, Arc::new(AtomicF64::new(c.to_factor)));
            }
        }
        let skip = changes.len().saturating_sub(HISTORY_LEN);
        Ok(ThresholdManager {
            factors: Mutex::new(factors),
            history: Mutex::new(changes.into_iter().skip(skip).collect()),
            store,
        })
    }

    /// The shared cell of `pool`'s history factor, created at 1.0.
    pub fn cell(&self, pool: Name) -> Arc<AtomicF64> {
        lock(&self.factors)
            .entry(pool)
            .or_insert_with(|| Arc::new(AtomicF64::new(1.0)))
            .clone()
    }

    /// The current history factor of `pool`.
    pub fn factor(&self, pool: Name) -> f64 {
        self.cell(pool).load()
    }

    /// Moves `pool`'s threshold toward `target` bytes, by at most
    /// `adaptation.max_step` and within the overall factor bounds; logs and
    /// persists the change before it takes effect.
    pub fn adjust_toward(
        &self,
        pool: Name,
        settings: &PoolSettings,
        adaptation: &Adaptation,
        proposal: &Proposal<'_>,
    ) -> Result<ThresholdChange, ThresholdError> {
        if !settings.learning {
            return Err(ThresholdError::LearningOff(pool.to_string()));
        }
        if proposal.target == 0 {
            return Err(ThresholdError::InvalidTarget(proposal.target.to_string()));
        }
        let cell = self.cell(pool);
        let from = cell.load();
        let wanted = proposal.target as f64 / settings.threshold.max(1) as f64;
        let step_lo = from * (1.0 - adaptation.max_step);
        let step_hi = from * (1.0 + adaptation.max_step);
        let to = wanted
            .clamp(step_lo, step_hi)
            .clamp(adaptation.min_factor, adaptation.max_factor);
        self.apply(cell, ChangeKind::Adjust, pool, settings, from, to, proposal)
    }

    /// Restores `pool`'s threshold to its configured base.
    pub fn reset(
        &self,
        pool: Name,
        settings: &PoolSettings,
        reason: &str,
        now: Timestamp,
    ) -> Result<ThresholdChange, ThresholdError> {
        let cell = self.cell(pool);
        let from = cell.load();
        let proposal = Proposal {
            target: settings.threshold,
            reason,
            expected_gain: 0.0,
            at: now,
        };
        self.apply(
            cell,
            ChangeKind::Reset,
            pool,
            settings,
            from,
            1.0,
            &proposal,
        )
    }

    #[allow(clippy::too_many_arguments)] // Private: each argument is a distinct part of the change.
    fn apply(
        &self,
        cell: Arc<AtomicF64>,
        kind: ChangeKind,
        pool: Name,
        settings: &PoolSettings,
        from: f64,
        to: f64,
        proposal: &Proposal<'_>,
    ) -> Result<ThresholdChange, ThresholdError> {
        let base = settings.threshold as f64;
        let change = ThresholdChange {
            pool,
            at: proposal.at,
            kind,
            from_factor: from,
            to_factor: to,
            from_bytes: clamp_bytes(base * from, settings),
            to_bytes: clamp_bytes(base * to, settings),
            reason: proposal.reason.to_string(),
            expected_gain: proposal.expected_gain,
        };
        // Already there (e.g. held at a bound): nothing changes, nothing is logged.
        if kind == ChangeKind::Adjust && to == from {
            return Ok(change);
        }
        self.store.append(&change)?;
        cell.store(to);
        let mut history = lock(&self.history);
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(change.clone());
        Ok(change)
    }

    /// The logged changes, oldest first (the most recent [`HISTORY_LEN`]).
    pub fn history(&self) -> Vec<ThresholdChange> {
        lock(&self.history).iter().cloned().collect()
    }
}

fn clamp_bytes(bytes: f64, settings: &PoolSettings) -> u64 {
    (bytes.max(0.0) as u64).clamp(settings.floor, settings.ceiling.max(settings.floor))
}

/// The effective threshold of a pool: base x history x resources, clamped to
/// its floor and ceiling.
pub fn breakdown(
    settings: &PoolSettings,
    history: f64,
    system: &SystemState,
    adaptation: &Adaptation,
) -> ThresholdBreakdown {
    let resources = resource_factor(settings.threshold, system, adaptation);
    let effective = clamp_bytes(settings.threshold as f64 * history * resources, settings);
    ThresholdBreakdown {
        base: settings.threshold,
        history,
        resources,
        effective,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::MemoryThresholdStore;

    const MIB: u64 = 1 << 20;

    fn propose(target: u64, reason: &str, expected_gain: f64, at: Timestamp) -> Proposal<'_> {
        Proposal {
            target,
            reason,
            expected_gain,
            at,
        }
    }

    fn manager() -> (ThresholdManager, MemoryThresholdStore) {
        let store = MemoryThresholdStore::default();
        let m = ThresholdManager::restore(Arc::new(store.clone())).unwrap();
        (m, store)
    }

    #[test]
    fn adjustments_are_bounded_per_step_and_overall() {
        let (m, _) = manager();
        let s = PoolSettings::default();
        let a = Adaptation::default();
        let pool = Name::DEFAULT_POOL;
        let c = m
            .adjust_toward(
                pool,
                &s,
                &a,
                &propose(2 * MIB, "crossover at 2 MiB", 0.1, Timestamp(1)),
            )
            .unwrap();
        assert_eq!(c.from_factor, 1.0);
        assert_eq!(c.to_factor, 0.75, "one step moves at most 25 %");
        assert_eq!(c.to_bytes, 15 * MIB / 2);
        for i in 0..20 {
            m.adjust_toward(
                pool,
                &s,
                &a,
                &propose(2 * MIB, "crossover at 2 MiB", 0.1, Timestamp(i)),
            )
            .unwrap();
        }
        assert_eq!(m.factor(pool), 0.25, "never below min_factor");
        for i in 0..40 {
            m.adjust_toward(
                pool,
                &s,
                &a,
                &Proposal {
                    target: 900 * MIB,
                    reason: "crossover high",
                    expected_gain: 0.1,
                    at: Timestamp(i),
                },
            )
            .unwrap();
        }
        assert_eq!(m.factor(pool), 4.0, "never above max_factor");
    }

    #[test]
    fn every_change_is_logged_persisted_and_restored_and_reset_restores_the_base() {
        let (m, store) = manager();
        let s = PoolSettings::default();
        let a = Adaptation::default();
        let ml = Name::new("ml").unwrap();
        m.adjust_toward(
            ml,
            &s,
            &a,
            &propose(5 * MIB, "measured crossover", 0.08, Timestamp(7)),
        )
        .unwrap();
        assert_eq!(m.history().len(), 1);
        assert_eq!(m.history()[0].reason, "measured crossover");
        assert_eq!(m.history()[0].expected_gain, 0.08);

        let again = ThresholdManager::restore(Arc::new(store.clone())).unwrap();
        assert_eq!(again.factor(ml), 0.75);
        assert_eq!(again.history().len(), 1);

        let r = again.reset(ml, &s, "operator reset", Timestamp(9)).unwrap();
        assert_eq!(
            (r.kind, r.to_factor, r.to_bytes),
            (ChangeKind::Reset, 1.0, 10 * MIB)
        );
        assert_eq!(again.factor(ml), 1.0);
        assert_eq!(store.load().unwrap().len(), 2);
    }

    #[test]
    fn a_failing_store_changes_nothing() {
        struct Broken;
        impl ThresholdStore for Broken {
            fn load(&self) -> Result<Vec<ThresholdChange>, ThresholdError> {
                Ok(Vec::new())
            }
            fn append(&self, _c: &ThresholdChange) -> Result<(), ThresholdError> {
                Err(ThresholdError::Store("disk full".into()))
            }
        }
        let m = ThresholdManager::restore(Arc::new(Broken)).unwrap();
        let s = PoolSettings::default();
        let err = m
            .adjust_toward(
                Name::DEFAULT_POOL,
                &s,
                &Adaptation::default(),
                &propose(MIB, "x", 0.0, Timestamp(0)),
            )
            .unwrap_err();
        assert_eq!(err, ThresholdError::Store("disk full".into()));
        assert_eq!(m.factor(Name::DEFAULT_POOL), 1.0);
        assert!(m.history().is_empty());
    }

    #[test]
    fn learning_off_refuses_adjustments() {
        let (m, _) = manager();
        let s = PoolSettings {
            learning: false,
            ..PoolSettings::default()
        };
        let err = m
            .adjust_toward(
                Name::DEFAULT_POOL,
                &s,
                &Adaptation::default(),
                &propose(MIB, "x", 0.0, Timestamp(0)),
            )
            .unwrap_err();
        assert!(matches!(err, ThresholdError::LearningOff(_)));
    }

    #[test]
    fn resources_bend_the_effective_threshold_within_bounds() {
        let s = PoolSettings::default();
        let a = Adaptation::default();
        let idle = breakdown(&s, 1.0, &SystemState::IDLE, &a);
        assert_eq!(idle.effective, 10 * MIB);
        let busy = SystemState {
            cpu_utilization: 0.9,
            ..SystemState::IDLE
        };
        assert_eq!(breakdown(&s, 1.0, &busy, &a).effective, 5 * MIB);
        let short_of_shm = SystemState {
            shm_free: 20 * MIB,
            ..SystemState::IDLE
        };
        assert_eq!(breakdown(&s, 1.0, &short_of_shm, &a).effective, 20 * MIB);
        assert_eq!(
            breakdown(&s, 0.01, &SystemState::IDLE, &a).effective,
            s.floor
        );
        assert_eq!(
            breakdown(&s, 1e6, &SystemState::IDLE, &a).effective,
            s.ceiling
        );
    }
}
