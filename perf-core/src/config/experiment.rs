//! A/B experiments as configured (`[[experiments]]`): variants of one pool's settings, split by
//! weight, with the metric and the test that decide between them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::PoolSettings;
use crate::name::Name;
use crate::vocab::UnknownName;

/// At most this many experiments may be configured.
pub const MAX_EXPERIMENTS: usize = 16;
/// At most this many variants per experiment, the control included.
pub const MAX_VARIANTS: usize = 8;
/// Samples per variant before a result may be read, unless configured (R9.3).
pub const DEFAULT_MIN_SAMPLES: u64 = 10_000;
/// The false-positive rate of the test, unless configured.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// The longest seed accepted, in bytes.
pub const MAX_SEED_LEN: usize = 256;

/// One experiment: which pool, how its traffic is split, what is measured and how it is tested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    /// The experiment's name, unique in the file.
    pub name: Name,
    /// The pool whose transfers it splits.
    pub pool: Name,
    /// Hashed with each unit to assign it a variant; the name unless configured. Changing it
    /// reshuffles every unit.
    pub seed: String,
    /// What is assigned to a variant.
    pub unit: ExperimentUnit,
    /// When it starts (Unix milliseconds); before, the pool decides as configured.
    pub start_unix_ms: Option<u64>,
    /// When it stops (Unix milliseconds); after, the pool decides as configured.
    pub stop_unix_ms: Option<u64>,
    /// What the variants are compared on.
    pub metric: ExperimentMetric,
    /// Samples per variant before a winner may be named.
    pub min_samples: u64,
    /// The test's false-positive rate.
    pub alpha: f64,
    /// How the results may be looked at.
    pub mode: ExperimentMode,
    /// The variants, the control first; their weights sum to 1.
    pub variants: Vec<Variant>,
}

impl Experiment {
    /// The variant everything is compared against: the first.
    pub fn control(&self) -> &Variant {
        &self.variants[0]
    }

    /// Whether the experiment runs at `now_unix_ms`: after its start and before its stop.
    pub fn active_at(&self, now_unix_ms: u64) -> bool {
        self.start_unix_ms.is_none_or(|start| now_unix_ms >= start)
            && self.stop_unix_ms.is_none_or(|stop| now_unix_ms < stop)
    }
}

/// One variant: its share of the traffic and the pool's settings with its overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// The variant's name, unique in its experiment.
    pub name: Name,
    /// Its share of the units, in (0, 1].
    pub weight: f64,
    /// The pool's settings with this variant's overrides applied, checked as a pool's are.
    pub settings: PoolSettings,
    /// The settings keys this variant overrides, in file order.
    pub overrides: Vec<String>,
}

crate::vocab::named_enum! {
    /// What an experiment assigns to a variant.
    ExperimentUnit, "experiment unit" {
        /// The transfer's session id (`TransferRequest::session`): a session stays in its variant.
        Session = "session",
    }
}

crate::vocab::named_enum! {
    /// What an experiment compares its variants on; lower is better except for throughput.
    ExperimentMetric, "experiment metric" {
        /// The mean latency of a transfer.
        MeanLatency = "mean_latency",
        /// The 95th percentile of latency, its interval by bootstrap.
        P95Latency = "p95_latency",
        /// Bytes per second of a transfer.
        Throughput = "throughput",
        /// CPU time per transfer, host and worker.
        CpuTime = "cpu_time",
        /// Shared memory held per transfer.
        Memory = "memory",
    }
}

crate::vocab::named_enum! {
    /// How an experiment's results may be read.
    ExperimentMode, "experiment mode" {
        /// Always-valid p-values and confidence sequences: the results may be looked at any time.
        Sequential = "sequential",
        /// One test at the planned sample size; nothing is concluded before it.
        Fixed = "fixed",
    }
}
