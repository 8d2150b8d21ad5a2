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

/// The longest look back of a [`StatsRequest`], seconds (3650 days).
pub const MAX_STATS_SINCE_SECS: u64 = 3650 * 86_400;
/// The most buckets a [`StatsRequest`] may cover.
pub const MAX_STATS_BUCKETS: u64 = 100_000;

/// What the statistics of `perfopt stats` (and `/api/v1/stats`) cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRequest {
    /// Only this pool.
    pub pool: Option<Name>,
    /// Only this method.
    pub method: Option<Method>,
    /// How far back from now, 1 s to [`MAX_STATS_SINCE_SECS`].
    pub since_secs: u64,
    /// The width of a bucket, 1 s to 1 h; the range holds at most [`MAX_STATS_BUCKETS`].
    pub granularity_secs: u32,
    /// Whether to add the correlation profile, from the raw samples of the range.
    pub profile: bool,
}

impl StatsRequest {
    /// Checks the bounds, saying which one is broken.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_STATS_SINCE_SECS).contains(&self.since_secs) {
            return Err(format!(
                "since expected 1 to {MAX_STATS_SINCE_SECS} s, got {}",
                self.since_secs
            ));
        }
        if !(1..=3600).contains(&self.granularity_secs) {
            return Err(format!(
                "granularity expected 1 to 3600 s, got {}",
                self.granularity_secs
            ));
        }
        let buckets = self.since_secs.div_ceil(u64::from(self.granularity_secs));
        if buckets > MAX_STATS_BUCKETS {
            return Err(format!(
                "{} s at {} s a bucket is {buckets} buckets, expected at most \
                 {MAX_STATS_BUCKETS}: widen the granularity or shorten the range",
                self.since_secs, self.granularity_secs
            ));
        }
        Ok(())
    }
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
    /// Only transfers assigned to a variant of this experiment.
    #[serde(default)]
    pub experiment: Option<Name>,
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
