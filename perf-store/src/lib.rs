//! The metrics store of perfopt: records every transfer without blocking the caller, keeps
//! time series from 1 s to 1 h with mergeable histograms, answers percentile queries, and
//! persists everything in an embedded redb file.
//!
//! - [`StoreSink`] implements `MetricsSink`: `record` pushes onto a bounded lock-free queue
//!   (a full queue drops and counts, never stalls); one background thread aggregates into 1 s,
//!   1 min and 1 h [`Bucket`]s per pool x method x size class x data type and commits them with
//!   the raw samples every 100 ms or N records. A failing backend keeps everything in memory
//!   and retries; nothing committed is lost.
//! - A failed transfer is a recorded fact: its raw sample is kept whole, and its bucket counts
//!   it by [`perf_core::FailureKind`] ([`Failures`]) while its latency, the time until it
//!   failed, stays out of every latency, throughput and memory measure; time queued for
//!   admission is kept for every transfer.
//! - [`StoreQuery`] implements `MetricsQuery`: P50, P95, P99, P99.9, mean and count for any
//!   range at any granularity from 1 s to 1 h, by merging histograms (never averaging
//!   percentiles), raw samples for training (delivered transfers only), and correlation [`Profile`]s (R2.6).
//! - [`RedbBackend`] is the durable [`Backend`]: one atomic write transaction per batch, a
//!   versioned schema with [`migrate()`] (backup first), [`Retention`] with archival, a
//!   read-only [`check`] and [`check_access`] for `perfopt doctor`, [`RedbReader`] for the
//!   commands that only read (it works on a read-only filesystem, and beside the one process
//!   that writes; a second writer gets [`StoreError::Held`] naming the first), [`RedbThresholdStore`] so thresholds and
//!   their history survive a restart (R1.6), and [`RedbModelStore`] for trained models. [`MemoryBackend`] serves tests and runs that keep
//!   nothing.
//!
//! It covers R2.1, R2.3, R2.5, R2.6, the series of R5.4, R14.5 and R14.6.

pub mod schema;

pub use schema::{
    Backend, Batch, Bucket, BucketKey, Failures, Granularity, Measure, SeriesKey, Stats,
    StoreError, size_class,
};

pub mod aggregate;
pub mod bucket;
pub mod memory;
pub mod profile;
pub mod query;
pub mod report;
pub mod sink;
#[cfg(test)]
mod test_support;

pub use aggregate::{Aggregator, AggregatorConfig, Committed};
pub use memory::{FlakyBackend, MemoryBackend, MemoryConfig};
pub use profile::{Profile, ProfileRow};
pub use query::StoreQuery;
pub use report::{BucketStats, MethodStats, StatsReport};
pub use sink::{SinkConfig, SinkStats, StoreSink};

pub mod datadir;
pub mod db;
pub mod migrate;
pub mod retention;

pub use datadir::{DATA_DIR_ENV, DataDir, DataDirError, DataDirSource};
pub use db::{
    AccessReport, CheckReport, MODEL_VERSIONS_KEPT, ModelInfo, RedbBackend, RedbConfig,
    RedbModelStore, RedbReader, RedbThresholdStore, StoreFile, TableRows, WriteFaults, check,
    check_access,
};
pub use migrate::{MigrationReport, migrate};
pub use retention::{CleanupReport, Retention};
