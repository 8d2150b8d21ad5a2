//! A bounded in-memory [`Backend`]: the store when no data directory is wanted, and the backend of
//! tests of the layers above storage.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use perf_core::{SampleFilter, TransferMetrics};

use crate::schema::{Backend, Batch, Bucket, BucketKey, Granularity, SeriesKey, StoreError};

/// How much a [`MemoryBackend`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Raw samples kept; beyond it the oldest are dropped.
    pub max_samples: usize,
    /// Bucket start times kept per granularity; beyond it the oldest start's buckets are dropped.
    /// Buckets are held encoded, typically well under a kilobyte each.
    pub max_bucket_starts: usize,
}

impl Default for MemoryConfig {
    /// 100,000 raw samples; an hour of 1 s buckets, and as many starts of the coarser ones.
    fn default() -> Self {
        MemoryConfig {
            max_samples: 100_000,
            max_bucket_starts: 3600,
        }
    }
}

/// Encoded buckets of one granularity, by start then series.
type Buckets = BTreeMap<u64, BTreeMap<SeriesKey, Vec<u8>>>;

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<TransferMetrics>,
    buckets: [Buckets; 3],
    samples_evicted: u64,
}

/// A [`Backend`] that keeps everything in memory, bounded by a [`MemoryConfig`]; buckets are held
/// in their compact stored encoding.
///
/// Commits are atomic: a batch is applied whole under one lock.
#[derive(Debug)]
pub struct MemoryBackend {
    config: MemoryConfig,
    inner: Mutex<Inner>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new(MemoryConfig::default())
    }
}

fn index(g: Granularity) -> usize {
    match g {
        Granularity::Second => 0,
        Granularity::Minute => 1,
        Granularity::Hour => 2,
    }
}

/// Whether `m` passes `filter`.
pub(crate) fn passes(filter: &SampleFilter, m: &TransferMetrics) -> bool {
    filter.pool.is_none_or(|p| p == m.pool)
        && filter.method.is_none_or(|x| x == m.method)
        && m.started_at >= filter.since
        && filter
            .sizes
            .is_none_or(|(lo, hi)| (lo..=hi).contains(&m.size))
        && filter
            .experiment
            .is_none_or(|e| m.experiment.is_some_and(|arm| arm.experiment == e))
}

impl MemoryBackend {
    /// An empty backend keeping at most what `config` allows (each bound at least 1).
    pub fn new(config: MemoryConfig) -> MemoryBackend {
        MemoryBackend {
            config: MemoryConfig {
                max_samples: config.max_samples.max(1),
                max_bucket_starts: config.max_bucket_starts.max(1),
            },
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: every update is a whole insert.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest `limit` samples that pass `filter` and `keep`, newest first.
    fn newest(
        &self,
        filter: &SampleFilter,
        limit: usize,
        keep: impl Fn(&TransferMetrics) -> bool,
    ) -> Vec<TransferMetrics> {
        self.lock()
            .samples
            .iter()
            .rev()
            .filter(|m| passes(filter, m) && keep(m))
            .take(limit)
            .copied()
            .collect()
    }

    /// How many raw samples it holds.
    pub fn sample_count(&self) -> usize {
        self.lock().samples.len()
    }

    /// How many raw samples were dropped to stay within `max_samples`.
    pub fn samples_evicted(&self) -> u64 {
        self.lock().samples_evicted
    }

    /// How many buckets of `granularity` it holds.
    pub fn bucket_count(&self, granularity: Granularity) -> usize {
        self.lock().buckets[index(granularity)]
            .values()
            .map(BTreeMap::len)
            .sum()
    }
}

impl Backend for MemoryBackend {
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let skip = batch.samples.len().saturating_sub(self.config.max_samples);
        inner.samples_evicted += skip as u64;
        inner
            .samples
            .extend(batch.samples.iter().skip(skip).copied());
        let excess = inner.samples.len().saturating_sub(self.config.max_samples);
        inner.samples.drain(..excess);
        inner.samples_evicted += excess as u64;
        for (key, bucket) in &batch.buckets {
            let map = &mut inner.buckets[index(key.granularity)];
            map.entry(key.start_secs)
                .or_default()
                .insert(key.series, bucket.to_bytes());
            while map.len() > self.config.max_bucket_starts {
                map.pop_first();
            }
        }
        Ok(())
    }

    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
        if from_secs >= to_secs {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let mut out = Vec::new();
        for (&start_secs, series) in inner.buckets[index(granularity)].range(from_secs..to_secs) {
            for (&series, bucket) in series {
                let key = BucketKey {
                    granularity,
                    start_secs,
                    series,
                };
                let bucket = Bucket::from_bytes(bucket)
                    .map_err(|e| StoreError::Corrupt(format!("{key:?}: {e}")))?;
                out.push((key, bucket));
            }
        }
        Ok(out)
    }

    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        Ok(self.newest(filter, limit, |_| true))
    }

    fn evidence(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        Ok(self.newest(filter, limit, TransferMetrics::is_evidence))
    }
}

/// A memory backend whose next commits fail, as a full disk would make them:
/// for testing what sits above a store (retries, nothing lost, errors reported).
#[derive(Debug, Default)]
pub struct FlakyBackend {
    /// Where the commits that succeed land.
    pub inner: MemoryBackend,
    failures_left: std::sync::atomic::AtomicU32,
}

impl FlakyBackend {
    /// A backend whose first `n` commits fail.
    pub fn failing(n: u32) -> FlakyBackend {
        let backend = FlakyBackend::default();
        backend.fail_next(n);
        backend
    }

    /// Makes the next `n` commits fail.
    pub fn fail_next(&self, n: u32) {
        self.failures_left
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Backend for FlakyBackend {
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Io("no space left on device (injected)".into()));
        }
        self.inner.commit(batch)
    }
    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
        self.inner.buckets(granularity, from_secs, to_secs)
    }
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        self.inner.samples(filter, limit)
    }
    fn evidence(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        self.inner.evidence(filter, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::{Method, Name, Timestamp};

    use crate::test_support::metrics;

    #[test]
    fn keeps_at_most_max_samples_newest_first() {
        let backend = MemoryBackend::new(MemoryConfig {
            max_samples: 3,
            max_bucket_starts: 2,
        });
        let samples: Vec<_> = (0..5).map(|i| metrics(i, 10.0 + i as f64)).collect();
        backend
            .commit(&Batch {
                samples: samples[..2].to_vec(),
                buckets: Vec::new(),
            })
            .unwrap();
        backend
            .commit(&Batch {
                samples: samples[2..].to_vec(),
                buckets: Vec::new(),
            })
            .unwrap();
        assert_eq!(backend.sample_count(), 3);
        assert_eq!(backend.samples_evicted(), 2);
        let got = backend.samples(&SampleFilter::default(), 10).unwrap();
        let latencies: Vec<f64> = got.iter().map(|m| m.latency_us).collect();
        assert_eq!(latencies, [14.0, 13.0, 12.0]);
        let since = SampleFilter {
            since: Timestamp::from_secs(4),
            ..SampleFilter::default()
        };
        assert_eq!(backend.samples(&since, 10).unwrap().len(), 1);
        let other_pool = SampleFilter {
            pool: Some(Name::new("other").unwrap()),
            ..SampleFilter::default()
        };
        assert!(backend.samples(&other_pool, 10).unwrap().is_empty());
        let zc = SampleFilter {
            method: Some(Method::ZeroCopy),
            ..SampleFilter::default()
        };
        assert!(backend.samples(&zc, 10).unwrap().is_empty());
    }

    #[test]
    fn buckets_replace_by_key_and_read_by_range() {
        let backend = MemoryBackend::new(MemoryConfig {
            max_samples: 10,
            max_bucket_starts: 2,
        });
        let m = metrics(0, 5.0);
        let key = |start_secs| BucketKey {
            granularity: Granularity::Second,
            start_secs,
            series: SeriesKey::of(&m),
        };
        let mut one = Bucket::default();
        one.record(&m);
        let mut two = one.clone();
        two.record(&m);
        let batch = Batch {
            samples: Vec::new(),
            buckets: vec![(key(1), one.clone()), (key(2), one)],
        };
        backend.commit(&batch).unwrap();
        backend
            .commit(&Batch {
                samples: Vec::new(),
                buckets: vec![(key(2), two)],
            })
            .unwrap();
        let got = backend.buckets(Granularity::Second, 0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].1.count(),
            2,
            "a committed bucket replaces the stored one"
        );
        assert_eq!(backend.buckets(Granularity::Second, 2, 3).unwrap().len(), 1);
        assert!(
            backend
                .buckets(Granularity::Minute, 0, 10)
                .unwrap()
                .is_empty()
        );
        backend
            .commit(&Batch {
                samples: Vec::new(),
                buckets: vec![(key(3), Bucket::default())],
            })
            .unwrap();
        assert_eq!(
            backend.bucket_count(Granularity::Second),
            2,
            "the oldest start is dropped beyond max_bucket_starts"
        );
    }
}
