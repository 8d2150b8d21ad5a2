//! The hot-path [`MetricsSink`]: a bounded lock-free queue that one background thread drains into
//! time buckets and commits to a [`Backend`] in batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use perf_core::{MetricsSink, TransferMetrics};

use crate::aggregate::{Aggregator, AggregatorConfig};
use crate::schema::{Backend, StoreError};

/// The largest queue a sink accepts, in records.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// The largest number of records a sink aggregates between two commits.
pub const MAX_BATCH_RECORDS: usize = 1_000_000;
/// The largest number of raw samples a sink holds while its backend fails.
pub const MAX_PENDING_SAMPLES: usize = 10_000_000;

/// The longest an idle drain thread sleeps before it looks at the queue again.
const MAX_IDLE_PARK: Duration = Duration::from_millis(10);

/// How a [`StoreSink`] buffers and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkConfig {
    /// Records the queue holds before `record` starts dropping (1 to [`MAX_QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
    /// Longest time between commits while records are waiting (1 ms to 60 s).
    pub flush_interval: Duration,
    /// Records that trigger a commit before the interval ends (1 to [`MAX_BATCH_RECORDS`]).
    pub batch_records: usize,
    /// Raw samples kept in memory while commits fail (1 to [`MAX_PENDING_SAMPLES`]); beyond it
    /// the oldest raw samples are dropped and counted, their aggregates kept.
    pub max_pending_samples: usize,
    /// Seconds a bucket stays in memory after it ends, for late samples (at most 3600).
    pub grace_secs: u64,
}

impl Default for SinkConfig {
    /// A 16,384-record queue, commits every 100 ms or 10,000 records, 1,000,000 pending raw
    /// samples, 5 s of grace.
    fn default() -> Self {
        SinkConfig {
            queue_capacity: 16_384,
            flush_interval: Duration::from_millis(100),
            batch_records: 10_000,
            max_pending_samples: 1_000_000,
            grace_secs: 5,
        }
    }
}

impl SinkConfig {
    /// Checks every bound, naming the first value out of range.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &str, got: String, expected: &str| {
            Err(StoreError::Invalid(format!(
                "{what} {got}, expected {expected}"
            )))
        };
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return bad(
                "queue capacity",
                self.queue_capacity.to_string(),
                &format!("1 to {MAX_QUEUE_CAPACITY}"),
            );
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.flush_interval) {
            return bad(
                "flush interval",
                format!("{:?}", self.flush_interval),
                "1 ms to 60 s",
            );
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&self.batch_records) {
            return bad(
                "batch records",
                self.batch_records.to_string(),
                &format!("1 to {MAX_BATCH_RECORDS}"),
            );
        }
        if !(1..=MAX_PENDING_SAMPLES).contains(&self.max_pending_samples) {
            return bad(
                "max pending samples",
                self.max_pending_samples.to_string(),
                &format!("1 to {MAX_PENDING_SAMPLES}"),
            );
        }
        if self.grace_secs > 3600 {
            return bad("grace", format!("{} s", self.grace_secs), "at most 3600 s");
        }
        Ok(())
    }
}

/// What a [`StoreSink`] has done so far: a snapshot, exact once [`MetricsSink::flush`] returned
/// with no recording in progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkStats {
    /// Calls to `record`.
    pub recorded: u64,
    /// Records whose aggregates are committed to the backend.
    pub committed: u64,
    /// Records dropped because the queue was full: they are nowhere.
    pub dropped: u64,
    /// Raw samples dropped while commits failed; their aggregates are kept.
    pub samples_dropped: u64,
    /// Commits that failed.
    pub failed_commits: u64,
    /// The last commit error, cleared by the next successful commit.
    pub last_error: Option<StoreError>,
    /// Records waiting in the queue (at most its capacity).
    pub queued: u64,
    /// Raw samples held in memory for the next commit.
    pub pending_samples: u64,
    /// Buckets held in memory, as of the last commit.
    pub open_buckets: u64,
}

/// State shared by the sink, its callers and its drain thread.
struct Shared {
    queue: ArrayQueue<TransferMetrics>,
    /// Records dropped because the queue was full.
    dropped: AtomicU64,
    /// Records the drain thread popped.
    received: AtomicU64,
    control: Mutex<Control>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Control {
    /// The newest flush generation asked for.
    flush_requested: u64,
    /// The newest flush generation served, and how its commit went.
    flush_done: u64,
    flush_result: Option<StoreError>,
    shutdown: bool,
    /// The drain thread has exited (or panicked).
    stopped: bool,
    committed: u64,
    samples_dropped: u64,
    failed_commits: u64,
    last_error: Option<StoreError>,
    pending_samples: u64,
    open_buckets: u64,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`MetricsSink`] that aggregates into 1 s, 1 min and 1 h buckets and commits them with the
/// raw samples to a [`Backend`], every flush interval or every `batch_records` records.
///
/// `record` never blocks and does not allocate: it pushes onto a bounded lock-free queue and
/// counts a drop when the queue is full. A failing backend is retried at every interval while
/// everything stays in memory (raw samples bounded, aggregates kept). Dropping the sink flushes
/// and joins its thread.
pub struct StoreSink {
    shared: Arc<Shared>,
    drain: Thread,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink")
            .field("stats", &self.stats())
            .finish()
    }
}

impl StoreSink {
    /// Starts a sink writing to `backend`; it must be the backend's only writer.
    pub fn new(backend: Arc<dyn Backend>, config: SinkConfig) -> Result<StoreSink, StoreError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(config.queue_capacity),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
        });
        let worker = Drain {
            shared: Arc::clone(&shared),
            backend,
            config,
            agg: Aggregator::new(AggregatorConfig {
                max_pending_samples: config.max_pending_samples,
                grace_secs: config.grace_secs,
            }),
        };
        let handle = thread::Builder::new()
            .name("perfopt-store".into())
            .spawn(move || worker.run())
            .map_err(|e| StoreError::Io(format!("cannot start the store thread: {e}")))?;
        Ok(StoreSink {
            shared,
            drain: handle.thread().clone(),
            handle: Some(handle),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        let c = self.shared.control();
        let received = self.shared.received.load(Ordering::Acquire);
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let queued = self.shared.queue.len() as u64;
        SinkStats {
            recorded: received + queued + dropped,
            queued,
            pending_samples: c.pending_samples,
            open_buckets: c.open_buckets,
            committed: c.committed,
            dropped,
            samples_dropped: c.samples_dropped,
            failed_commits: c.failed_commits,
            last_error: c.last_error.clone(),
        }
    }

    /// Like [`MetricsSink::flush`], but says whether the commit worked.
    pub fn try_flush(&self) -> Result<(), StoreError> {
        let mut c = self.shared.control();
        if c.stopped {
            return Err(StoreError::Io("the store thread has stopped".into()));
        }
        c.flush_requested += 1;
        let generation = c.flush_requested;
        self.drain.unpark();
        while c.flush_done < generation && !c.stopped {
            c = self
                .shared
                .changed
                .wait(c)
                .unwrap_or_else(|e| e.into_inner());
        }
        if c.flush_done < generation {
            return Err(StoreError::Io("the store thread has stopped".into()));
        }
        c.flush_result.clone().map_or(Ok(()), Err)
    }

    /// Flushes, stops the drain thread and returns the final counters, or the error of the final
    /// commit.
    pub fn close(mut self) -> Result<SinkStats, StoreError> {
        self.stop();
        let stats = self.stats();
        match &stats.last_error {
            Some(e) => Err(e.clone()),
            None => Ok(stats),
        }
    }

    fn stop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.shared.control().shutdown = true;
        self.drain.unpark();
        // A panicked drain thread has nothing left to flush.
        let _ = handle.join();
    }
}

impl MetricsSink for StoreSink {
    fn record(&self, metrics: &TransferMetrics) {
        if self.shared.queue.push(*metrics).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.drain.unpark();
        }
    }

    /// Waits until everything recorded before the call is committed, or the commit failed.
    fn flush(&self) {
        let _ = self.try_flush();
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Marks the drain thread stopped however it exits, so that no flush waits forever.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.control().stopped = true;
        self.0.changed.notify_all();
    }
}

/// The drain thread's state.
struct Drain {
    shared: Arc<Shared>,
    backend: Arc<dyn Backend>,
    config: SinkConfig,
    agg: Aggregator,
}

impl Drain {
    fn run(mut self) {
        let _guard = StopGuard(Arc::clone(&self.shared));
        let interval = self.config.flush_interval;
        let mut last_attempt = Instant::now();
        let mut failing = false;
        let mut idle_park = Duration::from_millis(1);
        // The flush generation being served and how many records it still has to pop.
        let mut serving: Option<(u64, usize)> = None;
        loop {
            let (requested, shutdown) = {
                let c = self.shared.control();
                (c.flush_requested, c.shutdown)
            };
            if serving.is_none() && requested > self.served() {
                serving = Some((requested, self.shared.queue.len()));
            }
            let popped = self.pop(self.config.batch_records);
            if let Some((_, left)) = &mut serving {
                *left = left.saturating_sub(popped);
            }
            let flush_ready = serving.is_some_and(|(_, left)| left == 0);
            let drained = shutdown && self.shared.queue.is_empty();
            let waiting = self.agg.uncommitted() > 0;
            let now = Instant::now();
            let due = flush_ready
                || drained
                || (waiting && now.duration_since(last_attempt) >= interval)
                || (!failing && self.agg.uncommitted() >= self.config.batch_records as u64);
            if due {
                last_attempt = now;
                failing = self.commit().is_err();
                if let Some((generation, _)) = serving.filter(|_| flush_ready) {
                    let mut c = self.shared.control();
                    c.flush_done = generation;
                    c.flush_result = c.last_error.clone().filter(|_| failing);
                    drop(c);
                    self.shared.changed.notify_all();
                    serving = None;
                }
            }
            if drained {
                return;
            }
            if popped == 0 && !due && serving.is_none() {
                thread::park_timeout(idle_park.min(interval));
                idle_park = (idle_park * 2).min(MAX_IDLE_PARK);
            } else {
                idle_park = Duration::from_millis(1);
            }
        }
    }

    fn served(&self) -> u64 {
        self.shared.control().flush_done
    }

    /// Pops and aggregates up to `max` records.
    fn pop(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(m) = self.shared.queue.pop() else {
                break;
            };
            self.agg.record(&m);
            n += 1;
            self.shared.received.fetch_add(1, Ordering::Release);
        }
        n
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let res = self.agg.commit(self.backend.as_ref());
        let mut c = self.shared.control();
        c.samples_dropped = self.agg.samples_dropped();
        c.pending_samples = self.agg.pending_samples() as u64;
        c.open_buckets = self.agg.open_buckets() as u64;
        match res {
            Ok(done) => {
                c.committed += done.transfers;
                c.last_error = None;
                Ok(())
            }
            Err(e) => {
                c.failed_commits += 1;
                c.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::metrics;

    #[test]
    fn config_bounds_name_the_value() {
        let bad = SinkConfig {
            queue_capacity: 0,
            ..SinkConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("queue capacity 0"), "{err}");
        let bad = SinkConfig {
            flush_interval: Duration::ZERO,
            ..SinkConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("flush interval")
        );
        assert!(SinkConfig::default().validate().is_ok());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // Whether or not the drain thread keeps up with a one-record queue, every record is
        // either committed or counted as dropped.
        let backend = Arc::new(crate::memory::MemoryBackend::default());
        let sink = StoreSink::new(
            backend,
            SinkConfig {
                queue_capacity: 1,
                ..SinkConfig::default()
            },
        )
        .unwrap();
        for i in 0..10_000 {
            sink.record(&metrics(i % 10, 10.0));
        }
        sink.flush();
        let stats = sink.stats();
        assert_eq!(stats.recorded, 10_000);
        assert_eq!(stats.committed + stats.dropped, 10_000);
    }
}
