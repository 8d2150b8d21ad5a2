//! The `MetricsQuery` seam: percentile series and raw samples by pool, method and range, the
//! types of its queries and answers, and a source with no data.

use serde::{Deserialize, Serialize};

use crate::metrics::TransferMetrics;
use crate::name::Name;
use crate::request::Timestamp;
use crate::vocab::Method;

/// A time range and filter for [`MetricsQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesQuery {
    /// Only this pool, or all.
    pub pool: Option<Name>,
    /// Only this method, or both.
    pub method: Option<Method>,
    /// Start of the range, inclusive.
    pub from: Timestamp,
    /// End of the range, exclusive.
    pub to: Timestamp,
    /// Bucket width in seconds, 1 to 3600.
    pub granularity_secs: u32,
}

/// Summary statistics of one metric over a set of transfers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// One time bucket of a series: delivered transfers' measures, and failed transfers counted
/// apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub start: Timestamp,
    /// Latency in microseconds.
    pub latency_us: Percentiles,
    /// Throughput in bytes per second.
    pub throughput_bps: Percentiles,
    /// Decision time in nanoseconds.
    pub decision_ns: Percentiles,
    /// Memory held in bytes.
    pub memory_bytes: Percentiles,
    /// Transfers that failed in the bucket: counted here, their latency (the time until they
    /// failed) in none of the measures above.
    #[serde(default)]
    pub failed: u64,
}

/// Which raw samples to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleFilter {
    /// Only this pool, or all.
    pub pool: Option<Name>,
    /// Only this method, or both.
    pub method: Option<Method>,
    /// Only samples at or after this time.
    pub since: Timestamp,
    /// Only sizes in this inclusive range.
    pub sizes: Option<(u64, u64)>,
}

/// Why a metrics query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query itself is invalid.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The backing store failed.
    #[error("metrics store failed: {0}")]
    Store(String),
}

/// Reads recorded metrics: percentile series and raw samples.
pub trait MetricsQuery: Send + Sync {
    /// Percentiles per time bucket (merged histograms, never averaged percentiles).
    fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError>;
    /// The most recent `limit` raw samples that pass `filter`, newest first.
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError>;
}

/// A query source with no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopQuery;

impl MetricsQuery for NoopQuery {
    fn series(&self, _query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(Vec::new())
    }
    fn samples(
        &self,
        _filter: &SampleFilter,
        _limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError> {
        Ok(Vec::new())
    }
}
