//! Open time buckets at every granularity, and the batches that carry them and the raw samples to a
//! [`Backend`] without ever losing what is already stored.

use std::collections::{HashMap, HashSet, VecDeque};

use perf_core::TransferMetrics;

use crate::schema::{Backend, Batch, Bucket, BucketKey, Granularity, SeriesKey, StoreError};

/// How an [`Aggregator`] bounds what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// Raw samples held while commits fail; beyond it the oldest raw samples are dropped (their
    /// aggregates are kept).
    pub max_pending_samples: usize,
    /// How long, in seconds, a bucket stays open after its end (as seen from the newest sample)
    /// before it is dropped from memory once committed.
    pub grace_secs: u64,
}

impl Default for AggregatorConfig {
    /// 1,000,000 pending raw samples and 5 s of grace.
    fn default() -> Self {
        AggregatorConfig {
            max_pending_samples: 1_000_000,
            grace_secs: 5,
        }
    }
}

/// What one call of [`Aggregator::commit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Transfers whose aggregates this commit made durable.
    pub transfers: u64,
    /// Raw samples it wrote.
    pub samples: u64,
    /// Buckets it wrote.
    pub buckets: u64,
}

/// Aggregates transfers into 1 s, 1 min and 1 h buckets and commits them with the raw samples.
///
/// A bucket written by a commit holds everything ever recorded in it: the first time a bucket is
/// opened in memory, the commit reads the stored bucket of the same key and merges it in, so a
/// restart or a late sample never replaces stored data. One aggregator must be the only writer of
/// its backend.
#[derive(Debug, Default)]
pub struct Aggregator {
    config: AggregatorConfig,
    open: HashMap<BucketKey, Bucket>,
    /// Keys touched since the last successful commit.
    dirty: HashSet<BucketKey>,
    /// Keys whose stored bucket has not been merged in yet.
    needs_base: HashSet<BucketKey>,
    pending: VecDeque<TransferMetrics>,
    /// Transfers aggregated since the last successful commit.
    uncommitted: u64,
    samples_dropped: u64,
    newest_secs: u64,
    scratch: Batch,
}

impl Aggregator {
    /// An empty aggregator bounded by `config` (at least one pending sample).
    pub fn new(config: AggregatorConfig) -> Aggregator {
        Aggregator {
            config: AggregatorConfig {
                max_pending_samples: config.max_pending_samples.max(1),
                ..config
            },
            ..Aggregator::default()
        }
    }

    /// Adds one transfer to its buckets at every granularity and to the pending raw samples.
    pub fn record(&mut self, m: &TransferMetrics) {
        let secs = m.started_at.as_nanos() / 1_000_000_000;
        self.newest_secs = self.newest_secs.max(secs);
        let series = SeriesKey::of(m);
        for granularity in Granularity::ALL {
            let key = BucketKey {
                granularity,
                start_secs: granularity.bucket_start(secs),
                series,
            };
            let bucket = self.open.entry(key).or_insert_with(|| {
                self.needs_base.insert(key);
                Bucket::default()
            });
            bucket.record(m);
            self.dirty.insert(key);
        }
        if self.pending.len() == self.config.max_pending_samples {
            self.pending.pop_front();
            self.samples_dropped += 1;
        }
        self.pending.push_back(*m);
        self.uncommitted += 1;
    }

    /// Transfers recorded since the last successful commit.
    pub fn uncommitted(&self) -> u64 {
        self.uncommitted
    }

    /// Raw samples dropped so far because commits failed for too long.
    pub fn samples_dropped(&self) -> u64 {
        self.samples_dropped
    }

    /// Buckets held in memory.
    pub fn open_buckets(&self) -> usize {
        self.open.len()
    }

    /// Raw samples waiting for a commit.
    pub fn pending_samples(&self) -> usize {
        self.pending.len()
    }

    /// Writes the pending raw samples and every bucket touched since the last successful commit,
    /// whole, as one batch. On error everything stays in memory for the next attempt.
    pub fn commit(&mut self, backend: &dyn Backend) -> Result<Committed, StoreError> {
        if self.dirty.is_empty() && self.pending.is_empty() {
            return Ok(Committed::default());
        }
        self.merge_bases(backend)?;
        let mut batch = std::mem::take(&mut self.scratch);
        batch.samples.clear();
        batch.samples.extend(self.pending.iter().copied());
        batch.buckets.clear();
        for key in &self.dirty {
            if let Some(bucket) = self.open.remove(key) {
                batch.buckets.push((*key, bucket));
            }
        }
        let res = backend.commit(&batch);
        // The buckets go back whether or not the commit worked: they are still the whole truth.
        for (key, bucket) in batch.buckets.drain(..) {
            self.open.insert(key, bucket);
        }
        let done = Committed {
            transfers: self.uncommitted,
            samples: batch.samples.len() as u64,
            buckets: self.dirty.len() as u64,
        };
        batch.samples.clear();
        self.scratch = batch;
        res?;
        self.pending.clear();
        self.dirty.clear();
        self.uncommitted = 0;
        self.evict_closed();
        Ok(done)
    }

    /// Merges the stored bucket into every open bucket that has not had it yet.
    fn merge_bases(&mut self, backend: &dyn Backend) -> Result<(), StoreError> {
        let mut starts: Vec<(Granularity, u64)> = self
            .needs_base
            .iter()
            .map(|k| (k.granularity, k.start_secs))
            .collect();
        starts.sort_unstable();
        starts.dedup();
        for (granularity, start) in starts {
            for (key, stored) in backend.buckets(granularity, start, start + 1)? {
                if self.needs_base.remove(&key)
                    && let Some(open) = self.open.get_mut(&key)
                {
                    open.merge(&stored);
                }
            }
            self.needs_base
                .retain(|k| (k.granularity, k.start_secs) != (granularity, start));
        }
        Ok(())
    }

    /// Drops committed buckets that ended more than the grace period before the newest sample.
    fn evict_closed(&mut self) {
        let (newest, grace) = (self.newest_secs, self.config.grace_secs);
        self.open
            .retain(|k, _| k.start_secs + k.granularity.secs() + grace > newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FlakyBackend;
    use crate::memory::MemoryBackend;
    use crate::test_support::metrics;

    #[test]
    fn commits_every_granularity_and_evicts_closed_buckets() {
        let backend = MemoryBackend::default();
        let mut agg = Aggregator::new(AggregatorConfig {
            max_pending_samples: 100,
            grace_secs: 2,
        });
        for s in 0..10 {
            agg.record(&metrics(s, 100.0));
        }
        let done = agg.commit(&backend).unwrap();
        assert_eq!(done.transfers, 10);
        assert_eq!(done.samples, 10);
        assert_eq!(done.buckets, 12, "10 seconds, 1 minute, 1 hour");
        assert_eq!(backend.bucket_count(Granularity::Second), 10);
        assert_eq!(backend.bucket_count(Granularity::Minute), 1);
        // Seconds 7, 8 and 9 end within 2 s of the newest sample (9), plus the minute and hour.
        assert_eq!(agg.open_buckets(), 3 + 2);
        assert_eq!(agg.commit(&backend).unwrap(), Committed::default());
    }

    #[test]
    fn a_late_sample_or_a_restart_merges_with_what_is_stored() {
        let backend = MemoryBackend::default();
        let mut agg = Aggregator::new(AggregatorConfig::default());
        agg.record(&metrics(0, 100.0));
        agg.record(&metrics(100, 100.0));
        agg.commit(&backend).unwrap();
        // Second 0 was evicted; a late sample for it must add to the stored bucket.
        agg.record(&metrics(0, 300.0));
        agg.commit(&backend).unwrap();
        let second = backend.buckets(Granularity::Second, 0, 1).unwrap();
        assert_eq!(second[0].1.count(), 2);
        // A new aggregator (a restart) adds to the stored hour instead of replacing it.
        let mut restarted = Aggregator::new(AggregatorConfig::default());
        restarted.record(&metrics(200, 100.0));
        restarted.commit(&backend).unwrap();
        let hour = backend.buckets(Granularity::Hour, 0, 1).unwrap();
        assert_eq!(hour[0].1.count(), 4);
    }

    #[test]
    fn failed_commits_keep_aggregates_and_bound_raw_samples() {
        let backend = FlakyBackend::failing(3);
        let mut agg = Aggregator::new(AggregatorConfig {
            max_pending_samples: 4,
            grace_secs: 0,
        });
        for round in 0..3 {
            for i in 0..3 {
                agg.record(&metrics(round * 3 + i, 50.0));
            }
            assert!(agg.commit(&backend).is_err());
        }
        assert_eq!(agg.pending_samples(), 4);
        assert_eq!(agg.samples_dropped(), 5);
        let done = agg.commit(&backend).unwrap();
        assert_eq!(done.transfers, 9);
        assert_eq!(done.samples, 4);
        let hour = backend.inner.buckets(Granularity::Hour, 0, 1).unwrap();
        assert_eq!(hour[0].1.count(), 9, "aggregates keep every transfer");
        assert_eq!(backend.inner.sample_count(), 4);
    }
}
