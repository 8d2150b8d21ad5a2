//! The store's record schema: series keys, bucket keys (the buckets themselves are in
//! [`crate::bucket`]), batches, errors, and the storage seam. ("Model" in this crate means a
//! trained model the store keeps, never this schema.)

use perf_core::{DataType, Method, Name, SampleFilter, TransferMetrics};
use serde::{Deserialize, Serialize};

pub use crate::bucket::{Bucket, BucketDecodeError, Failures, Measure, SIGNIFICANT_DIGITS, Stats};

/// The width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] = [Granularity::Second, Granularity::Minute, Granularity::Hour];

    /// The bucket width in seconds.
    pub const fn secs(self) -> u64 {
        match self {
            Granularity::Second => 1,
            Granularity::Minute => 60,
            Granularity::Hour => 3600,
        }
    }

    /// The start of the bucket holding `secs` (seconds since the epoch).
    pub const fn bucket_start(self, secs: u64) -> u64 {
        secs - secs % self.secs()
    }

    /// The coarsest stored granularity whose buckets tile a bucket of
    /// `width_secs` exactly (1 s always does).
    pub fn finest_for(width_secs: u64) -> Granularity {
        Granularity::ALL
            .into_iter()
            .rev()
            .find(|g| width_secs.is_multiple_of(g.secs()))
            .unwrap_or(Granularity::Second)
    }
}

/// The size class of a payload: `floor(log2(size))`, so 1 KiB is class 10.
pub fn size_class(size: u64) -> u8 {
    (63 - size.max(1).leading_zeros()) as u8
}

/// What one time series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The pool.
    pub pool: Name,
    /// The method that carried the transfers.
    pub method: Method,
    /// `floor(log2(size))` of the payloads.
    pub size_class: u8,
    /// What the payloads held.
    pub data_type: DataType,
}

impl SeriesKey {
    /// The series a transfer belongs to.
    pub fn of(m: &TransferMetrics) -> SeriesKey {
        SeriesKey {
            pool: m.pool,
            method: m.method,
            size_class: size_class(m.size),
            data_type: m.data_type,
        }
    }
}

/// One bucket of one series at one granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketKey {
    /// The bucket width.
    pub granularity: Granularity,
    /// Its start, in seconds since the epoch.
    pub start_secs: u64,
    /// The series.
    pub series: SeriesKey,
}

/// What one flush writes: raw samples and the buckets they touched, whole.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// New raw samples, in arrival order.
    pub samples: Vec<TransferMetrics>,
    /// Buckets to store, replacing any stored bucket of the same key.
    pub buckets: Vec<(BucketKey, Bucket)>,
}

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage device or file failed.
    #[error("metrics store i/o failed: {0}")]
    Io(String),
    /// The stored data is damaged.
    #[error("metrics store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by a newer perfopt.
    #[error(
        "metrics store has schema version {found}, this perfopt reads up to {supported}; upgrade perfopt"
    )]
    TooNew {
        /// The store's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The store needs `perfopt migrate` first.
    #[error("metrics store has schema version {found}, expected {expected}; run `perfopt migrate`")]
    NeedsMigration {
        /// The store's version.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// A query or argument is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store's path names something other than a regular file; it was not opened.
    #[error("metrics store {path} is {what}, expected a regular file")]
    NotAFile {
        /// The store's file.
        path: std::path::PathBuf,
        /// What is there instead, e.g. `a FIFO`.
        what: String,
    },
    /// Another process (or this one, through another open) holds the store open for writing.
    #[error("{}", held_message(path, holder.as_ref()))]
    Held {
        /// The store's file.
        path: std::path::PathBuf,
        /// Who holds it, when its holder file says so.
        holder: Option<crate::db::Holder>,
    },
    /// There is no store to read.
    #[error("no metrics store at {path}, expected one written by `perfopt run`")]
    Missing {
        /// The store's file.
        path: std::path::PathBuf,
    },
}

/// The message of [`StoreError::Held`].
fn held_message(path: &std::path::Path, holder: Option<&crate::db::Holder>) -> String {
    let who = match holder {
        Some(h) => format!("is held by {h}"),
        None => "is held open for writing by another process".to_string(),
    };
    format!(
        "metrics store {} {who}; stop it, or ask it (its HTTP API comes with `perfopt serve`)",
        path.display()
    )
}

/// Where batches go and buckets come from: a redb file, or memory in tests.
pub trait Backend: Send + Sync {
    /// Writes one batch atomically: all of it is committed or none.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// The stored buckets of `granularity` whose start lies in `from..to`
    /// (seconds since the epoch).
    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError>;
    /// The most recent `limit` raw samples that pass `filter`, newest first: every stored
    /// record, failed transfers included.
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError>;
    /// The most recent `limit` raw samples that pass `filter` and are timing evidence
    /// ([`TransferMetrics::is_evidence`]: delivered, not failed), newest first.
    fn evidence(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities_and_size_classes() {
        assert_eq!(Granularity::Minute.bucket_start(125), 120);
        assert_eq!(Granularity::finest_for(120), Granularity::Minute);
        assert_eq!(Granularity::finest_for(7200), Granularity::Hour);
        assert_eq!(Granularity::finest_for(90), Granularity::Second);
        assert_eq!(size_class(1024), 10);
        assert_eq!(size_class(1025), 10);
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(1 << 30), 30);
    }
}
