//! The online learner and its lock-free predictor: models per pool x method of requests and of
//! call replies, versioned, published by one atomic swap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use perf_core::crossover::{Measured, crossover};
use perf_core::decision::MethodEstimate;
use perf_core::seams::{Prediction, Predictor};
use perf_core::{Method, Name, ReplyRecord, SystemState, TransferMetrics, TransferRequest};
use serde::Serialize;

use crate::error::PredictError;
use crate::model::{MethodModel, ModelConfig, ModelEstimate};

/// Identifies one model: a pool and a method (the platform is the learner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ModelKey {
    /// The pool.
    pub pool: Name,
    /// The method.
    pub method: Method,
}

/// An immutable, published state of every model: what predictions read.
#[derive(Debug, Clone)]
pub struct ModelSnapshot {
    pub(crate) version: u64,
    pub(crate) platform: Arc<str>,
    pub(crate) config: ModelConfig,
    /// Sorted by key, so that a lookup is a binary search.
    pub(crate) models: Vec<(ModelKey, Arc<MethodModel>)>,
    /// The models of call replies (the worker's reply back to the host, measured from the
    /// acknowledgement to the bytes in hand), sorted by key.
    pub(crate) replies: Vec<(ModelKey, Arc<MethodModel>)>,
    /// Per pool, sorted: the reply size from which zero-copy replies beat gRPC ones, where
    /// the reply models say so (see [`ModelSnapshot::reply_crossover`]).
    pub(crate) reply_crossovers: Vec<(Name, u64)>,
}

/// The sizes at which the reply models are compared: powers of two from 1 KiB to 1 GiB.
const REPLY_SIZES: std::ops::RangeInclusive<u32> = 10..=30;

/// The model of `key` in `models` (sorted by key).
fn find(models: &[(ModelKey, Arc<MethodModel>)], key: ModelKey) -> Option<&MethodModel> {
    models
        .binary_search_by_key(&key, |(k, _)| *k)
        .ok()
        .map(|i| &*models[i].1)
}

/// The model of `key` in `models` (sorted by key), made when missing, ready to change.
fn entry<'a>(
    models: &'a mut Vec<(ModelKey, Arc<MethodModel>)>,
    key: ModelKey,
    config: &ModelConfig,
) -> &'a mut MethodModel {
    let i = match models.binary_search_by_key(&key, |(k, _)| *k) {
        Ok(i) => i,
        Err(i) => {
            models.insert(i, (key, Arc::new(MethodModel::new(config))));
            i
        }
    };
    Arc::make_mut(&mut models[i].1)
}

/// A reply seen as a transfer of its own for the reply models: its method, size and latency,
/// under the call's conditions. Its CPU time and memory are not measured apart from the
/// call's, so they are zero.
fn reply_sample(call: &TransferMetrics, reply: &ReplyRecord) -> TransferMetrics {
    let throughput_bps = if reply.latency_us > 0.0 {
        reply.size as f64 / (reply.latency_us / 1e6)
    } else {
        0.0
    };
    TransferMetrics {
        method: reply.method,
        decided_method: reply.method,
        size: reply.size,
        latency_us: reply.latency_us,
        throughput_bps,
        memory_bytes: 0,
        cpu_time_us: 0.0,
        fallback: None,
        predicted_latency_us: None,
        reply: None,
        ..*call
    }
}

/// The reply crossover of every pool that has reply models of both methods (see
/// [`ModelSnapshot::reply_crossover`]).
pub(crate) fn reply_crossovers(
    config: &ModelConfig,
    replies: &[(ModelKey, Arc<MethodModel>)],
) -> Vec<(Name, u64)> {
    let mut pools: Vec<Name> = replies.iter().map(|(k, _)| k.pool).collect();
    pools.dedup();
    pools
        .into_iter()
        .filter_map(|pool| {
            let model = |method| find(replies, ModelKey { pool, method });
            let (zc, grpc) = (model(Method::ZeroCopy)?, model(Method::Grpc)?);
            let mut measured = Vec::new();
            for size in REPLY_SIZES.map(|k| 1u64 << k) {
                let (a, b) = (zc.estimate(config, size), grpc.estimate(config, size));
                let sure = |e: &ModelEstimate| {
                    e.class_samples >= config.min_class_samples && e.interval_us.is_some()
                };
                if sure(&a) && sure(&b) {
                    measured.push(Measured::new(size, Method::ZeroCopy, a.latency_us));
                    measured.push(Measured::new(size, Method::Grpc, b.latency_us));
                }
            }
            if measured.is_empty() {
                return None;
            }
            // Measured by both and zero-copy not ahead at the largest: gRPC as far as known.
            Some((pool, crossover(measured).unwrap_or(u64::MAX)))
        })
        .collect()
}

impl ModelSnapshot {
    /// The version: 0 when empty, one more on every published update.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The platform these models were measured on.
    pub fn platform(&self) -> &str {
        &self.platform
    }

    /// The settings the models learn with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The model of `method` in `pool`, if it has seen a transfer.
    pub fn model(&self, pool: Name, method: Method) -> Option<&MethodModel> {
        find(&self.models, ModelKey { pool, method })
    }

    /// Every model, by key.
    pub fn models(&self) -> impl Iterator<Item = (ModelKey, &MethodModel)> {
        self.models.iter().map(|(k, m)| (*k, &**m))
    }

    /// The model of replies that came back by `method` from `pool`'s workers, if one has.
    pub fn reply_model(&self, pool: Name, method: Method) -> Option<&MethodModel> {
        find(&self.replies, ModelKey { pool, method })
    }

    /// Every reply model, by key.
    pub fn reply_models(&self) -> impl Iterator<Item = (ModelKey, &MethodModel)> {
        self.replies.iter().map(|(k, m)| (*k, &**m))
    }

    /// The reply size from which replies from `pool`'s workers come back faster by shared memory
    /// than by gRPC: [`perf_core::crossover`] of the two reply models' estimates at every power
    /// of two from 1 KiB to 1 GiB where both have seen enough replies of that size class
    /// ([`ModelConfig::min_class_samples`]) to give an interval. `u64::MAX` when gRPC was not
    /// beaten at the largest such size; `None` while no size qualifies. No allocation.
    pub fn reply_crossover(&self, pool: Name) -> Option<u64> {
        self.reply_crossovers
            .binary_search_by_key(&pool, |(p, _)| *p)
            .ok()
            .map(|i| self.reply_crossovers[i].1)
    }

    /// The estimate of `method` for `size` bytes in `pool` at the CPU
    /// utilisation its model saw most recently; no allocation.
    pub fn estimate(&self, pool: Name, method: Method, size: u64) -> Option<ModelEstimate> {
        self.model(pool, method)
            .map(|m| m.estimate(&self.config, size))
    }

    /// The estimate of `method` for `size` bytes in `pool` under `system`'s
    /// CPU utilisation (which picks the load band of the corrections); no allocation.
    pub fn estimate_under(
        &self,
        pool: Name,
        method: Method,
        size: u64,
        system: &SystemState,
    ) -> Option<ModelEstimate> {
        self.model(pool, method)
            .map(|m| m.estimate_under(&self.config, size, system.cpu_utilization))
    }

    /// Whether `estimate` is trusted enough to replace calibrated coefficients.
    pub fn usable(&self, estimate: &ModelEstimate) -> bool {
        estimate.class_samples >= self.config.min_class_samples && estimate.interval_us.is_some()
    }
}

struct History {
    previous: Option<Arc<ModelSnapshot>>,
    next_version: u64,
}

/// Learns cost models from transfers, off the decision path.
///
/// Updates take a mutex (only updaters contend), change the one model they
/// touch, and publish a new [`ModelSnapshot`] with one atomic swap; the
/// predictor only loads the snapshot. The previous version is kept for
/// [`Learner::rollback`].
pub struct Learner {
    current: Arc<ArcSwap<ModelSnapshot>>,
    history: Mutex<History>,
    failed_skipped: AtomicU64,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// Whether a transfer can teach a model: delivered (a failed transfer's
/// latency is no evidence, see `TransferMetrics::is_evidence`), no fallback,
/// sane numbers.
pub fn usable_sample(m: &TransferMetrics) -> bool {
    m.is_evidence()
        && m.fallback.is_none()
        && m.size > 0
        && m.latency_us.is_finite()
        && m.latency_us > 0.0
        && m.cpu_time_us.is_finite()
        && m.cpu_time_us >= 0.0
}

impl Learner {
    /// An empty learner for models measured on `platform`.
    pub fn new(platform: &str, config: ModelConfig) -> Result<Learner, PredictError> {
        config.validate()?;
        Ok(Learner::from_snapshot(ModelSnapshot {
            version: 0,
            platform: Arc::from(platform),
            config,
            models: Vec::new(),
            replies: Vec::new(),
            reply_crossovers: Vec::new(),
        }))
    }

    /// A learner that starts from `snapshot` (checked by the caller), with no
    /// earlier version to roll back to.
    pub(crate) fn from_snapshot(snapshot: ModelSnapshot) -> Learner {
        let next_version = snapshot.version.saturating_add(1);
        Learner {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            history: Mutex::new(History {
                previous: None,
                next_version,
            }),
            failed_skipped: AtomicU64::new(0),
        }
    }

    /// Learns from one transfer and publishes a new version; returns whether
    /// the sample was used (see [`usable_sample`]).
    pub fn update(&self, m: &TransferMetrics) -> bool {
        self.update_batch(std::slice::from_ref(m)) == 1
    }

    /// Learns from `samples` in order and publishes one new version if any
    /// was used; returns how many were used. Failed transfers are skipped and
    /// counted (see [`Learner::failed_skipped`]), as are other unusable ones.
    /// The reply of a call that measured a reply route
    /// ([`TransferMetrics::reply_evidence`]) teaches the pool's reply model of its
    /// method as well; replies are not in the count (see [`Learner::reply_samples`]).
    pub fn update_batch(&self, samples: &[TransferMetrics]) -> usize {
        let failed = samples.iter().filter(|m| !m.is_evidence()).count();
        if failed > 0 {
            self.failed_skipped
                .fetch_add(failed as u64, Ordering::Relaxed);
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let mut next = (*old).clone();
        let mut used = 0;
        let mut replies = 0;
        for m in samples {
            let config = next.config;
            if usable_sample(m) {
                let key = ModelKey {
                    pool: m.pool,
                    method: m.method,
                };
                entry(&mut next.models, key, &config).update(&config, m);
                used += 1;
            }
            if let Some(r) = m.reply_evidence() {
                let reply = reply_sample(m, r);
                if usable_sample(&reply) {
                    let key = ModelKey {
                        pool: m.pool,
                        method: r.method,
                    };
                    entry(&mut next.replies, key, &config).update(&config, &reply);
                    replies += 1;
                }
            }
        }
        if replies > 0 {
            next.reply_crossovers = reply_crossovers(&next.config, &next.replies);
        }
        if used + replies > 0 {
            next.version = history.next_version;
            history.next_version = history.next_version.saturating_add(1);
            history.previous = Some(old);
            self.current.store(Arc::new(next));
        }
        used
    }

    /// Failed transfers handed to [`Learner::update_batch`] (or
    /// [`Learner::update`]) and skipped: their latency is no evidence.
    pub fn failed_skipped(&self) -> u64 {
        self.failed_skipped.load(Ordering::Relaxed)
    }

    /// Transfers the published models have learned from, over every model.
    pub fn samples(&self) -> u64 {
        self.current
            .load()
            .models
            .iter()
            .map(|(_, m)| m.samples())
            .sum()
    }

    /// Replies the published reply models have learned from, over every reply model.
    pub fn reply_samples(&self) -> u64 {
        self.current
            .load()
            .replies
            .iter()
            .map(|(_, m)| m.samples())
            .sum()
    }

    /// The published version.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<ModelSnapshot> {
        self.current.load_full()
    }

    /// Puts the previous version back (e.g. after a bad batch) and returns its
    /// number; later updates get new, higher numbers. Only one step back is kept.
    pub fn rollback(&self) -> Result<u64, PredictError> {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let previous = history
            .previous
            .take()
            .ok_or_else(|| PredictError::NoPreviousVersion(self.version()))?;
        let version = previous.version;
        self.current.store(previous);
        Ok(version)
    }

    /// A predictor that reads this learner's published models.
    pub fn predictor(&self) -> LearnedPredictor {
        LearnedPredictor {
            current: self.current.clone(),
        }
    }
}

/// The [`Predictor`] of learned models: one snapshot load, a binary search
/// and a few flops per call; no allocation, no lock.
#[derive(Clone)]
pub struct LearnedPredictor {
    current: Arc<ArcSwap<ModelSnapshot>>,
}

impl std::fmt::Debug for LearnedPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedPredictor")
            .field("version", &self.current.load().version)
            .finish()
    }
}

fn method_estimate(e: &ModelEstimate) -> MethodEstimate {
    MethodEstimate {
        latency_us: e.latency_us,
        setup_us: e.fixed_us,
        transfer_us: e.latency_us - e.fixed_us,
        page_fault_us: 0.0,
        cleanup_us: 0.0,
        memory_bytes: e.memory_bytes,
        cpu_us: e.cpu_us,
        interval_us: e.interval_us,
    }
}

impl Predictor for LearnedPredictor {
    fn name(&self) -> &str {
        "perf-predict rls"
    }

    /// `None` until both methods have enough samples in the request's size
    /// class and intervals; then estimates under `system`'s CPU utilisation
    /// and the lower of the two confidences.
    fn predict(&self, request: &TransferRequest, system: &SystemState) -> Option<Prediction> {
        let snap = self.current.load();
        let zc = snap.estimate_under(request.pool, Method::ZeroCopy, request.size, system)?;
        let grpc = snap.estimate_under(request.pool, Method::Grpc, request.size, system)?;
        if !(snap.usable(&zc) && snap.usable(&grpc)) {
            return None;
        }
        Some(Prediction {
            zero_copy: method_estimate(&zc),
            grpc: method_estimate(&grpc),
            confidence: zc.confidence.min(grpc.confidence),
            samples: zc.class_samples.min(grpc.class_samples),
        })
    }

    fn reply_crossover(&self, pool: Name) -> Option<u64> {
        self.current.load().reply_crossover(pool)
    }
}
