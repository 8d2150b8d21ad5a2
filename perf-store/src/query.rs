//! [`MetricsQuery`] over a [`Backend`]: percentile series at any granularity from 1 s to 1 h,
//! totals for a range, raw samples and correlation profiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use perf_core::{
    MetricsQuery, Percentiles, QueryError, SampleFilter, SeriesPoint, SeriesQuery, Timestamp,
    TransferMetrics,
};

use crate::profile::Profile;
use crate::schema::{Backend, Bucket, BucketKey, Granularity, Measure, SeriesKey, StoreError};

/// The most raw samples one query returns.
pub const MAX_SAMPLES_LIMIT: usize = 1_000_000;
/// The most points one series query returns.
pub const MAX_POINTS: u64 = 100_000;
/// The widest bucket a series query accepts, in seconds.
pub const MAX_GRANULARITY_SECS: u32 = 3600;

const NANOS: u64 = 1_000_000_000;

/// Reads percentiles, series and samples from a [`Backend`].
#[derive(Clone)]
pub struct StoreQuery {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for StoreQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreQuery").finish_non_exhaustive()
    }
}

fn store_error(e: StoreError) -> QueryError {
    match e {
        StoreError::Invalid(s) => QueryError::Invalid(s),
        other => QueryError::Store(other.to_string()),
    }
}

/// A validated series query in whole seconds.
struct Plan {
    width: u64,
    stored: Granularity,
    from_secs: u64,
    to_secs: u64,
}

fn plan(q: &SeriesQuery) -> Result<Plan, QueryError> {
    let width = u64::from(q.granularity_secs);
    if !(1..=u64::from(MAX_GRANULARITY_SECS)).contains(&width) {
        return Err(QueryError::Invalid(format!(
            "granularity {} s, expected 1 to {MAX_GRANULARITY_SECS} s",
            q.granularity_secs
        )));
    }
    if q.from >= q.to {
        return Err(QueryError::Invalid(format!(
            "range from {} ns to {} ns is empty, expected from before to",
            q.from.as_nanos(),
            q.to.as_nanos()
        )));
    }
    let stored = Granularity::finest_for(width);
    let from_secs = stored.bucket_start(q.from.as_nanos() / NANOS);
    let to_secs = q.to.as_nanos().div_ceil(NANOS);
    let first = from_secs - from_secs % width;
    let points = (to_secs - first).div_ceil(width);
    if points > MAX_POINTS {
        return Err(QueryError::Invalid(format!(
            "range holds {points} buckets of {width} s, expected at most {MAX_POINTS}; \
             use a coarser granularity or a shorter range"
        )));
    }
    Ok(Plan {
        width,
        stored,
        from_secs,
        to_secs,
    })
}

/// Percentiles of one measure, each value multiplied by `scale` (to convert units).
///
/// Percentiles come from the histogram, clamped to the exact min and max; count, mean, min and
/// max are exact.
pub fn percentiles(m: &Measure, scale: f64) -> Percentiles {
    let s = &m.stats;
    if s.count == 0 {
        return Percentiles::default();
    }
    let at = |q: f64| (m.histogram.value_at_quantile(q) as f64).clamp(s.min, s.max) * scale;
    Percentiles {
        count: s.count,
        mean: s.sum / s.count as f64 * scale,
        min: s.min * scale,
        max: s.max * scale,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// The point of a merged bucket starting at `start`, in each metric's unit (throughput in bytes
/// per second).
pub fn point(start: Timestamp, bucket: &Bucket) -> SeriesPoint {
    SeriesPoint {
        start,
        latency_us: percentiles(&bucket.latency_us, 1.0),
        throughput_bps: percentiles(&bucket.throughput_kib_s, 1024.0),
        decision_ns: percentiles(&bucket.decision_ns, 1.0),
        memory_bytes: percentiles(&bucket.memory_bytes, 1.0),
        failed: bucket.failed(),
    }
}

/// Whether the stored bucket `key` is of the pool, method and range of `q`.
fn wanted(q: &SeriesQuery, plan: &Plan, key: &BucketKey) -> bool {
    q.pool.is_none_or(|p| p == key.series.pool)
        && q.method.is_none_or(|m| m == key.series.method)
        && (plan.from_secs..plan.to_secs).contains(&key.start_secs)
}

impl StoreQuery {
    /// Queries over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> StoreQuery {
        StoreQuery { backend }
    }

    /// The backend it reads, for what the `MetricsQuery` seam does not ask: raw records,
    /// failed transfers included ([`Backend::samples`]).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The merged buckets of `q`, by start in seconds, empty buckets left out.
    ///
    /// Each merges the stored buckets of the coarsest granularity that tiles the requested width
    /// ([`Granularity::finest_for`]) whose start lies in the range rounded down to that
    /// granularity, for the requested pool and method.
    pub fn merged_buckets(&self, q: &SeriesQuery) -> Result<BTreeMap<u64, Bucket>, QueryError> {
        let plan = plan(q)?;
        let stored = self
            .backend
            .buckets(plan.stored, plan.from_secs, plan.to_secs)
            .map_err(store_error)?;
        let mut out: BTreeMap<u64, Bucket> = BTreeMap::new();
        for (key, bucket) in &stored {
            if !wanted(q, &plan, key) {
                continue;
            }
            let start = key.start_secs - key.start_secs % plan.width;
            out.entry(start).or_default().merge(bucket);
        }
        out.retain(|_, b| b.count() > 0);
        Ok(out)
    }

    /// Totals for the whole range of `q` per series (pool, method, size class and data type):
    /// delivered transfers with their measures, and failed ones by kind.
    pub fn series_totals(
        &self,
        q: &SeriesQuery,
    ) -> Result<BTreeMap<SeriesKey, Bucket>, QueryError> {
        let plan = plan(q)?;
        let stored = self
            .backend
            .buckets(plan.stored, plan.from_secs, plan.to_secs)
            .map_err(store_error)?;
        let mut out: BTreeMap<SeriesKey, Bucket> = BTreeMap::new();
        for (key, bucket) in &stored {
            if wanted(q, &plan, key) {
                out.entry(key.series).or_default().merge(bucket);
            }
        }
        out.retain(|_, b| b.count() > 0);
        Ok(out)
    }

    /// Totals for the whole range of `q`: one point starting at `q.from`, merging every bucket
    /// that [`MetricsQuery::series`] would return.
    pub fn summary(&self, q: &SeriesQuery) -> Result<SeriesPoint, QueryError> {
        let mut total = Bucket::default();
        for bucket in self.merged_buckets(q)?.values() {
            total.merge(bucket);
        }
        Ok(point(q.from, &total))
    }

    /// Latency and throughput against size, format, compression and load, from the most recent
    /// `limit` delivered transfers that pass `filter`.
    pub fn profile(&self, filter: &SampleFilter, limit: usize) -> Result<Profile, QueryError> {
        Ok(Profile::from_samples(&self.samples(filter, limit)?))
    }
}

impl MetricsQuery for StoreQuery {
    /// One point per non-empty bucket of `granularity_secs` (1 to 3600) in `from..to`, oldest
    /// first.
    fn series(&self, q: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(self
            .merged_buckets(q)?
            .iter()
            .map(|(&start, b)| point(Timestamp::from_secs(start), b))
            .collect())
    }

    /// At most [`MAX_SAMPLES_LIMIT`] samples, delivered transfers only: a failed transfer's
    /// latency is no timing evidence (the raw records, failed ones included, are
    /// [`Backend::samples`]).
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError> {
        if limit > MAX_SAMPLES_LIMIT {
            return Err(QueryError::Invalid(format!(
                "sample limit {limit}, expected at most {MAX_SAMPLES_LIMIT}"
            )));
        }
        self.backend.evidence(filter, limit).map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use crate::schema::Batch;
    use crate::test_support::metrics;

    fn query(from: u64, to: u64, granularity_secs: u32) -> SeriesQuery {
        SeriesQuery {
            pool: None,
            method: None,
            from: Timestamp::from_secs(from),
            to: Timestamp::from_secs(to),
            granularity_secs,
        }
    }

    #[test]
    fn invalid_queries_name_the_value() {
        let q = StoreQuery::new(Arc::new(MemoryBackend::default()));
        for (bad, needle) in [
            (query(0, 10, 0), "granularity 0 s"),
            (query(0, 10, 3601), "granularity 3601 s"),
            (query(10, 10, 1), "is empty"),
            (query(0, 200_000, 1), "200000 buckets of 1 s"),
        ] {
            let err = q.series(&bad).unwrap_err();
            assert!(
                matches!(&err, QueryError::Invalid(s) if s.contains(needle)),
                "{err}"
            );
        }
        let err = q
            .samples(&SampleFilter::default(), MAX_SAMPLES_LIMIT + 1)
            .unwrap_err();
        assert!(err.to_string().contains("sample limit 1000001"), "{err}");
    }

    #[test]
    fn percentiles_are_exact_where_stats_are_and_clamped() {
        let mut m = Measure::default();
        for v in 1..=1000 {
            m.record(v as f64);
        }
        let p = percentiles(&m, 2.0);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 2.0);
        assert_eq!(p.max, 2000.0);
        assert_eq!(p.mean, 1001.0);
        assert!((p.p50 - 1000.0).abs() <= 2.0, "{}", p.p50);
        assert!(p.p999 <= p.max);
        assert_eq!(
            percentiles(&Measure::default(), 1.0),
            Percentiles::default()
        );
    }

    #[test]
    fn throughput_is_reported_in_bytes_per_second() {
        let backend = Arc::new(MemoryBackend::default());
        let m = metrics(5, 1000.0); // 4096 bytes in 1 ms: 4,096,000 bytes/s.
        let mut b = Bucket::default();
        b.record(&m);
        let key = BucketKey {
            granularity: Granularity::Second,
            start_secs: 5,
            series: SeriesKey::of(&m),
        };
        backend
            .commit(&Batch {
                samples: vec![m],
                buckets: vec![(key, b)],
            })
            .unwrap();
        let q = StoreQuery::new(backend);
        let points = q.series(&query(0, 10, 1)).unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].start, Timestamp::from_secs(5));
        assert_eq!(points[0].throughput_bps.max, 4_096_000.0);
        assert_eq!(points[0].latency_us.p50, 1000.0);
        assert_eq!(q.summary(&query(0, 10, 1)).unwrap().latency_us.count, 1);
    }
}
