//! The statistics `perfopt stats` shows, as one value: totals, per method, per time bucket and,
//! when asked, the correlation profile. A store read directly and a running daemon asked over
//! HTTP (`/api/v1/stats`) give the same [`StatsReport`], which serializes to and from JSON.

use std::collections::BTreeMap;

use perf_core::{
    Method, Percentiles, QueryError, SampleFilter, SeriesQuery, StatsRequest, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::bucket::Failures;
use crate::profile::Profile;
use crate::query::{StoreQuery, percentiles, point};
use crate::schema::Bucket;

/// The most raw samples a profile is built from.
pub const PROFILE_SAMPLES: usize = 1_000_000;

/// Totals of a set of transfers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodStats {
    /// The method.
    pub method: Method,
    /// Transfers recorded, delivered or failed.
    pub transfers: u64,
    /// Of those, the delivered ones.
    pub delivered: u64,
    /// Of those, the failed ones.
    pub failed: u64,
    /// Failed transfers by kind (`unknown`: records that name no kind).
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Latency of the delivered transfers, microseconds.
    pub latency_us: Percentiles,
    /// Time queued before a transfer started, microseconds.
    pub queued_us: Percentiles,
}

/// One time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketStats {
    /// Its start, Unix seconds.
    pub start_unix_s: u64,
    /// Transfers recorded in it.
    pub count: u64,
    /// Of those, the delivered ones.
    pub delivered: u64,
    /// Of those, the failed ones.
    pub failed: u64,
    /// Failed transfers by kind.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Latency of the delivered transfers, microseconds.
    pub latency_us: Percentiles,
    /// Throughput, bytes per second.
    pub throughput_bps: Percentiles,
    /// Time to decide, nanoseconds.
    pub decision_ns: Percentiles,
    /// Memory used by a transfer, bytes.
    pub memory_bytes: Percentiles,
    /// Time queued, microseconds.
    pub queued_us: Percentiles,
}

/// The statistics of a range of transfers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// What was asked.
    pub request: StatsRequest,
    /// The width of a bucket, seconds.
    pub granularity_secs: u32,
    /// Transfers recorded, delivered or failed.
    pub total_transfers: u64,
    /// Of those, the delivered ones.
    pub delivered: u64,
    /// Of those, the failed ones.
    pub failed: u64,
    /// Failed transfers by kind.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Latency of the delivered transfers, microseconds.
    pub latency_us: Percentiles,
    /// Time queued, microseconds.
    pub queued_us: Percentiles,
    /// The same per method, in the order of [`Method`].
    pub by_method: Vec<MethodStats>,
    /// Every bucket of the range that holds transfers, oldest first.
    pub buckets: Vec<BucketStats>,
    /// How latency varies with size, format, compression and load, when asked.
    pub profile: Option<Profile>,
}

/// Failures by kind, kinds that did not occur left out.
fn kinds(f: &Failures) -> BTreeMap<String, u64> {
    let mut map: BTreeMap<String, u64> = f
        .kinds()
        .map(|(kind, n)| (kind.as_str().to_owned(), n))
        .collect();
    if f.unknown() > 0 {
        map.insert("unknown".to_owned(), f.unknown());
    }
    map
}

impl StatsReport {
    /// The statistics of what `request` covers, up to `now`, read through `query`.
    pub fn read(
        query: &StoreQuery,
        request: &StatsRequest,
        now: Timestamp,
    ) -> Result<StatsReport, QueryError> {
        request.check().map_err(QueryError::Invalid)?;
        let q = SeriesQuery {
            pool: request.pool,
            method: request.method,
            from: Timestamp(
                now.0
                    .saturating_sub(request.since_secs.saturating_mul(1_000_000_000)),
            ),
            to: Timestamp(now.0.saturating_add(1_000_000_000)),
            granularity_secs: request.granularity_secs,
        };
        // Each method's buckets are read once, and the totals and the merged buckets are made
        // of them, so that the report adds up even while transfers are being committed.
        let methods = match request.method {
            Some(m) => vec![m],
            None => Method::ALL.to_vec(),
        };
        let mut points: BTreeMap<u64, Bucket> = BTreeMap::new();
        let mut by_method: BTreeMap<Method, Bucket> = BTreeMap::new();
        for method in methods {
            let read = query.merged_buckets(&SeriesQuery {
                method: Some(method),
                ..q
            })?;
            let mut sum = Bucket::default();
            for (start, bucket) in read {
                sum.merge(&bucket);
                points.entry(start).or_default().merge(&bucket);
            }
            if sum.count() > 0 {
                by_method.insert(method, sum);
            }
        }
        let mut total = Bucket::default();
        for bucket in by_method.values() {
            total.merge(bucket);
        }
        let profile = if request.profile {
            let filter = SampleFilter {
                pool: request.pool,
                method: request.method,
                since: q.from,
                sizes: None,
                experiment: None,
            };
            Some(query.profile(&filter, PROFILE_SAMPLES)?)
        } else {
            None
        };
        let buckets = points
            .iter()
            .map(|(&start, b)| {
                let p = point(Timestamp::from_secs(start), b);
                BucketStats {
                    start_unix_s: start,
                    count: b.count(),
                    delivered: b.delivered(),
                    failed: b.failed(),
                    failures_by_kind: kinds(&b.failures),
                    latency_us: p.latency_us,
                    throughput_bps: p.throughput_bps,
                    decision_ns: p.decision_ns,
                    memory_bytes: p.memory_bytes,
                    queued_us: percentiles(&b.queued_us, 1.0),
                }
            })
            .collect();
        let by_method = by_method
            .iter()
            .map(|(&method, b)| MethodStats {
                method,
                transfers: b.count(),
                delivered: b.delivered(),
                failed: b.failed(),
                failures_by_kind: kinds(&b.failures),
                latency_us: percentiles(&b.latency_us, 1.0),
                queued_us: percentiles(&b.queued_us, 1.0),
            })
            .collect();
        Ok(StatsReport {
            request: *request,
            granularity_secs: request.granularity_secs,
            total_transfers: total.count(),
            delivered: total.delivered(),
            failed: total.failed(),
            failures_by_kind: kinds(&total.failures),
            latency_us: percentiles(&total.latency_us, 1.0),
            queued_us: percentiles(&total.queued_us, 1.0),
            by_method,
            buckets,
            profile,
        })
    }
}
