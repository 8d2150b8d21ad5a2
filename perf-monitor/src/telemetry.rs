//! The telemetry sink: every transfer record and its decision into atomic counters and
//! histograms in fixed tables, plus the gauges the host runtime sets.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use perf_core::{FailureKind, MetricsSink, Name, ReasonCode, TransferMetrics};

use crate::catalog::Family;
use crate::histogram::{AtomicHistogram, SeriesSnapshot};
use crate::labels::{
    FALLBACK_REASONS, PoolSlots, SIZE_CLASS_LABELS, SIZE_CLASSES, failure_index, fallback_index,
    fallback_label, size_class,
};

const METHODS: usize = 2;
const METHOD_LABELS: [&str; METHODS] = ["zero_copy", "grpc"];
const REASONS: usize = ReasonCode::ALL.len();
const FALLBACKS: usize = FALLBACK_REASONS.len();
const FAILURES: usize = FailureKind::ALL.len();
/// The bit pattern of a gauge that was never set.
const UNSET: u64 = u64::MAX;
/// Copies of the recorded tables: each recording thread keeps to one, so threads on different
/// cores do not contend for the same counters; exports add them up.
const SHARDS: usize = 8;

/// The next shard a thread that records for the first time is given.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The shard of the calling thread, given round-robin at its first record.
#[inline]
fn shard_index() -> usize {
    SHARD.with(|it| {
        let mut i = it.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
            it.set(i);
        }
        i
    })
}

/// What the telemetry is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The pools that get series of their own from the start; [`Telemetry::add_pools`] adds
    /// more, up to [`perf_core::config::MAX_POOLS`] in all. Records of any other pool (and of
    /// a pool named `other`) are counted under `pool="other"`.
    pub pools: Vec<Name>,
    /// The `version` label of `perfopt_build_info`.
    pub version: String,
}

impl TelemetryConfig {
    /// Series for `pools`, with this crate's version as the build version.
    pub fn for_pools(pools: impl IntoIterator<Item = Name>) -> TelemetryConfig {
        TelemetryConfig {
            pools: pools.into_iter().collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig::for_pools([Name::DEFAULT_POOL])
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// More pools were configured than have series.
    #[error("{got} pools configured for telemetry, expected at most {max}")]
    TooManyPools {
        /// Distinct pools given.
        got: usize,
        /// The most that get series.
        max: usize,
    },
    /// The OTLP settings are out of range.
    #[error("otlp {what}: {detail}")]
    OtlpConfig {
        /// The setting.
        what: &'static str,
        /// What was expected and what came.
        detail: String,
    },
    /// The decision log's settings are out of range.
    #[error("decision log: {0}")]
    DecisionLog(String),
    /// The OTLP exporter could not be built or could not deliver.
    #[error("otlp export failed: {0}")]
    Otlp(String),
}

/// The state of the learned model, as the host runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelStatus {
    /// Whether learning is on in the configuration.
    pub learning_enabled: bool,
    /// Whether a learned model takes part in decisions.
    pub active: bool,
    /// Its version.
    pub version: u64,
    /// Its accuracy on its validation set, 0 to 1, when known.
    pub validation_accuracy: Option<f64>,
}

/// The segment pool's holdings against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmUsage {
    /// Segments held.
    pub segments: u64,
    /// Bytes held.
    pub held_bytes: u64,
    /// Bytes it may hold.
    pub budget_bytes: u64,
}

/// The metrics of perfopt: a [`MetricsSink`] whose `record` takes no lock and allocates
/// nothing (relaxed atomic additions into tables sized at construction for every pool there
/// may be, one copy per shard of recording threads), with setters for the gauges the host
/// runtime knows. Exporters read it: [`Telemetry::prometheus_text`] and
/// [`crate::OtlpExporter`].
#[derive(Debug)]
pub struct Telemetry {
    pub(crate) version: String,
    pub(crate) pools: PoolSlots,
    shards: Box<[Shard]>,
    drift_events: AtomicU64,
    in_flight: AtomicU64,
    queued: AtomicU64,
    thresholds: Box<[AtomicU64]>,
    shm_segments: AtomicU64,
    shm_held: AtomicU64,
    shm_budget: AtomicU64,
    learning_enabled: AtomicU64,
    model_active: AtomicU64,
    model_version: AtomicU64,
    model_accuracy: AtomicU64,
    degraded: AtomicU64,
}

/// The tables `record` adds to, once per shard; aligned so that two shards never share a
/// cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    transfers: Box<[AtomicU64]>,
    bytes: Box<[AtomicU64]>,
    decisions: Box<[AtomicU64]>,
    explorations: Box<[AtomicU64]>,
    fallbacks: Box<[AtomicU64]>,
    failures: Box<[AtomicU64]>,
    reply_bytes: Box<[AtomicU64]>,
    invalid: AtomicU64,
    duration: AtomicHistogram,
    queue: AtomicHistogram,
    decision: AtomicHistogram,
    reply: AtomicHistogram,
}

impl Shard {
    /// Tables for `p` pool slots.
    fn new(p: usize) -> Shard {
        Shard {
            transfers: zeros(p * METHODS),
            bytes: zeros(p * METHODS),
            decisions: zeros(METHODS * REASONS),
            explorations: zeros(METHODS),
            fallbacks: zeros(p * FALLBACKS),
            failures: zeros(p * FAILURES),
            reply_bytes: zeros(METHODS),
            invalid: AtomicU64::new(0),
            duration: AtomicHistogram::new(
                Family::TransferDuration.bounds_ns(),
                p * METHODS * SIZE_CLASSES,
            ),
            queue: AtomicHistogram::new(Family::QueueDuration.bounds_ns(), p),
            decision: AtomicHistogram::new(Family::DecisionDuration.bounds_ns(), 1),
            reply: AtomicHistogram::new(Family::ReplyDuration.bounds_ns(), METHODS),
        }
    }
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// Microseconds to whole nanoseconds, or `None` when not a finite non-negative number.
#[inline]
fn us_to_ns(us: f64) -> Option<u64> {
    (us.is_finite() && us >= 0.0).then_some((us * 1e3) as u64)
}

impl Telemetry {
    /// Tables for `config`'s pools.
    pub fn new(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let pools = PoolSlots::new(&config.pools)?;
        let p = pools.capacity();
        Ok(Telemetry {
            version: config.version.clone(),
            shards: (0..SHARDS).map(|_| Shard::new(p)).collect(),
            drift_events: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            thresholds: (0..p).map(|_| AtomicU64::new(UNSET)).collect(),
            shm_segments: AtomicU64::new(0),
            shm_held: AtomicU64::new(0),
            shm_budget: AtomicU64::new(0),
            learning_enabled: AtomicU64::new(0),
            model_active: AtomicU64::new(0),
            model_version: AtomicU64::new(0),
            model_accuracy: AtomicU64::new(UNSET),
            degraded: AtomicU64::new(0),
            pools,
        })
    }

    /// Gives each of `pools` series of its own from now on (a reload configured them); returns
    /// how many could not have one, because [`perf_core::config::MAX_POOLS`] pools already
    /// do, and stay counted under `pool="other"`. Takes a lock that recording never takes.
    pub fn add_pools(&self, pools: impl IntoIterator<Item = Name>) -> usize {
        pools
            .into_iter()
            .filter(|p| p.as_str() != crate::labels::OTHER_POOL && !self.pools.add(*p))
            .count()
    }

    /// Sets the transfers being carried and those waiting for admission.
    pub fn set_load(&self, in_flight: u64, queued: u64) {
        self.in_flight.store(in_flight, Relaxed);
        self.queued.store(queued, Relaxed);
    }

    /// Sets a pool's effective threshold in bytes; returns false (and keeps nothing) when the
    /// pool has no series of its own.
    pub fn set_pool_threshold(&self, pool: Name, bytes: u64) -> bool {
        let slot = self.pools.slot(&pool);
        if slot == self.pools.other() {
            return false;
        }
        self.thresholds[slot].store(bytes.min(UNSET - 1), Relaxed);
        true
    }

    /// Sets the segment pool's holdings and budget.
    pub fn set_shm(&self, usage: ShmUsage) {
        self.shm_segments.store(usage.segments, Relaxed);
        self.shm_held.store(usage.held_bytes, Relaxed);
        self.shm_budget.store(usage.budget_bytes, Relaxed);
    }

    /// Sets the learned model's state; an accuracy outside 0..=1 counts as unknown.
    pub fn set_model(&self, status: ModelStatus) {
        self.learning_enabled
            .store(u64::from(status.learning_enabled), Relaxed);
        self.model_active.store(u64::from(status.active), Relaxed);
        self.model_version.store(status.version, Relaxed);
        let accuracy = status
            .validation_accuracy
            .filter(|a| (0.0..=1.0).contains(a))
            .map_or(UNSET, f64::to_bits);
        self.model_accuracy.store(accuracy, Relaxed);
    }

    /// Adds `n` drift events detected by learning.
    pub fn add_drift_events(&self, n: u64) {
        self.drift_events.fetch_add(n, Relaxed);
    }

    /// Sets whether the optimizer runs degraded.
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.store(u64::from(degraded), Relaxed);
    }

    /// The series of `family` as they are now. Counters of configured pools and fixed label
    /// sets are present at zero; histograms, the `other` pool and unset gauges only once they
    /// have a value.
    pub(crate) fn points(&self, family: Family) -> Vec<Point> {
        let mut out = Vec::new();
        let pools: Vec<usize> = self.pools.in_use().collect();
        let other = self.pools.other();
        let pool = |slot: usize| ("pool", self.pools.label(slot).to_owned());
        let method = |m: usize| ("method", METHOD_LABELS[m].to_owned());
        let counter = |out: &mut Vec<Point>, labels: Vec<(&'static str, String)>, v: u64| {
            out.push(Point {
                labels,
                value: PointValue::Counter(v),
            });
        };
        let gauge = |out: &mut Vec<Point>, labels: Vec<(&'static str, String)>, v: f64| {
            out.push(Point {
                labels,
                value: PointValue::Gauge(v),
            });
        };
        let load = |a: &AtomicU64| a.load(Relaxed);
        // A table's totals over every shard.
        let merged = |table: fn(&Shard) -> &[AtomicU64]| -> Vec<u64> {
            let mut total = vec![0u64; table(&self.shards[0]).len()];
            for shard in self.shards.iter() {
                for (t, a) in total.iter_mut().zip(table(shard)) {
                    *t = t.wrapping_add(a.load(Relaxed));
                }
            }
            total
        };
        // A histogram series over every shard, if any shard has an observation in it.
        let series = |h: fn(&Shard) -> &AtomicHistogram, i: usize| {
            self.shards
                .iter()
                .filter_map(|shard| h(shard).series(i))
                .reduce(|a, b| a.merged(&b))
        };
        match family {
            Family::Transfers | Family::TransferBytes => {
                let table = if family == Family::Transfers {
                    merged(|s| &s.transfers)
                } else {
                    merged(|s| &s.bytes)
                };
                for &s in &pools {
                    let row = &table[s * METHODS..(s + 1) * METHODS];
                    if s == other && row.iter().all(|&n| n == 0) {
                        continue;
                    }
                    for (m, n) in row.iter().enumerate() {
                        counter(&mut out, vec![pool(s), method(m)], *n);
                    }
                }
            }
            Family::Decisions => {
                let decisions = merged(|s| &s.decisions);
                for m in 0..METHODS {
                    for (r, code) in ReasonCode::ALL.iter().enumerate() {
                        let v = decisions[m * REASONS + r];
                        counter(
                            &mut out,
                            vec![method(m), ("reason", code.as_str().to_owned())],
                            v,
                        );
                    }
                }
            }
            Family::Explorations => {
                let explorations = merged(|s| &s.explorations);
                for (m, n) in explorations.iter().enumerate() {
                    counter(&mut out, vec![method(m)], *n);
                }
            }
            Family::Fallbacks => {
                let fallbacks = merged(|s| &s.fallbacks);
                for &s in &pools {
                    let row = &fallbacks[s * FALLBACKS..(s + 1) * FALLBACKS];
                    if s == other && row.iter().all(|&n| n == 0) {
                        continue;
                    }
                    for (r, n) in FALLBACK_REASONS.iter().zip(row) {
                        let reason = ("reason", fallback_label(*r).to_owned());
                        counter(&mut out, vec![pool(s), reason], *n);
                    }
                }
            }
            Family::Failures => {
                let failures = merged(|s| &s.failures);
                for &s in &pools {
                    let row = &failures[s * FAILURES..(s + 1) * FAILURES];
                    if s == other && row.iter().all(|&n| n == 0) {
                        continue;
                    }
                    for (k, n) in FailureKind::ALL.iter().zip(row) {
                        let kind = ("kind", k.as_str().to_owned());
                        counter(&mut out, vec![pool(s), kind], *n);
                    }
                }
            }
            Family::ReplyBytes => {
                for (m, n) in merged(|s| &s.reply_bytes).iter().enumerate() {
                    counter(&mut out, vec![method(m)], *n);
                }
            }
            Family::DriftEvents => counter(&mut out, vec![], load(&self.drift_events)),
            Family::InvalidMeasurements => {
                let n = self.shards.iter().map(|s| load(&s.invalid)).sum();
                counter(&mut out, vec![], n)
            }
            Family::TransferDuration => {
                for &s in &pools {
                    for m in 0..METHODS {
                        for (c, class) in SIZE_CLASS_LABELS.iter().enumerate() {
                            let i = (s * METHODS + m) * SIZE_CLASSES + c;
                            if let Some(h) = series(|s| &s.duration, i) {
                                let labels =
                                    vec![pool(s), method(m), ("size_class", (*class).to_owned())];
                                out.push(Point::histogram(labels, h));
                            }
                        }
                    }
                }
            }
            Family::QueueDuration => {
                for &s in &pools {
                    if let Some(h) = series(|shard| &shard.queue, s) {
                        out.push(Point::histogram(vec![pool(s)], h));
                    }
                }
            }
            Family::DecisionDuration => {
                if let Some(h) = series(|s| &s.decision, 0) {
                    out.push(Point::histogram(vec![], h));
                }
            }
            Family::ReplyDuration => {
                for m in 0..METHODS {
                    if let Some(h) = series(|s| &s.reply, m) {
                        out.push(Point::histogram(vec![method(m)], h));
                    }
                }
            }
            Family::InFlight => gauge(&mut out, vec![], load(&self.in_flight) as f64),
            Family::Queued => gauge(&mut out, vec![], load(&self.queued) as f64),
            Family::PoolThreshold => {
                for &s in pools.iter().filter(|&&s| s != other) {
                    let v = load(&self.thresholds[s]);
                    if v != UNSET {
                        gauge(&mut out, vec![pool(s)], v as f64);
                    }
                }
            }
            Family::ShmSegments => gauge(&mut out, vec![], load(&self.shm_segments) as f64),
            Family::ShmHeld => gauge(&mut out, vec![], load(&self.shm_held) as f64),
            Family::ShmBudget => gauge(&mut out, vec![], load(&self.shm_budget) as f64),
            Family::LearningEnabled => gauge(&mut out, vec![], load(&self.learning_enabled) as f64),
            Family::ModelActive => gauge(&mut out, vec![], load(&self.model_active) as f64),
            Family::ModelVersion => gauge(&mut out, vec![], load(&self.model_version) as f64),
            Family::ModelAccuracy => {
                let v = load(&self.model_accuracy);
                if v != UNSET {
                    gauge(&mut out, vec![], f64::from_bits(v));
                }
            }
            Family::Degraded => gauge(&mut out, vec![], load(&self.degraded) as f64),
            Family::BuildInfo => gauge(&mut out, vec![("version", self.version.clone())], 1.0),
        }
        out
    }
}

impl MetricsSink for Telemetry {
    /// Counts the transfer and its decision. Delivered transfers add their bytes and duration;
    /// failed ones count by kind (a failure without a kind as `internal`) and stay out of the
    /// durations. No lock, no allocation, no syscall.
    #[inline]
    fn record(&self, m: &TransferMetrics) {
        let shard = &self.shards[shard_index()];
        let pool = self.pools.slot(&m.pool);
        let method = m.method.index();
        shard.transfers[pool * METHODS + method].fetch_add(1, Relaxed);
        let decided = m.decided_method.index();
        shard.decisions[decided * REASONS + m.reason.index()].fetch_add(1, Relaxed);
        if m.explored {
            shard.explorations[decided].fetch_add(1, Relaxed);
        }
        if let Some(reason) = m.fallback {
            shard.fallbacks[pool * FALLBACKS + fallback_index(reason)].fetch_add(1, Relaxed);
        }
        match us_to_ns(m.queued_us) {
            Some(ns) => shard.queue.observe(pool, ns),
            None => {
                shard.invalid.fetch_add(1, Relaxed);
            }
        }
        if m.decision_ns > 0 {
            shard.decision.observe(0, m.decision_ns);
        }
        if m.is_evidence() {
            shard.bytes[pool * METHODS + method].fetch_add(m.size, Relaxed);
            match us_to_ns(m.latency_us) {
                Some(ns) => {
                    let series = (pool * METHODS + method) * SIZE_CLASSES + size_class(m.size);
                    shard.duration.observe(series, ns);
                }
                None => {
                    shard.invalid.fetch_add(1, Relaxed);
                }
            }
        } else {
            let kind = m.failure.unwrap_or(FailureKind::Internal);
            shard.failures[pool * FAILURES + failure_index(kind)].fetch_add(1, Relaxed);
        }
        if let Some(reply) = &m.reply {
            let method = reply.method.index();
            shard.reply_bytes[method].fetch_add(reply.size, Relaxed);
            match us_to_ns(reply.latency_us) {
                Some(ns) => shard.reply.observe(method, ns),
                None => {
                    shard.invalid.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// One series of a family at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Label names and values, in the family's label order.
    pub(crate) labels: Vec<(&'static str, String)>,
    /// Its value.
    pub(crate) value: PointValue,
}

/// The value of a [`Point`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PointValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram series, in nanoseconds.
    Histogram(SeriesSnapshot),
}

impl Point {
    fn histogram(labels: Vec<(&'static str, String)>, h: SeriesSnapshot) -> Point {
        Point {
            labels,
            value: PointValue::Histogram(h),
        }
    }
}

#[cfg(test)]
mod tests;
