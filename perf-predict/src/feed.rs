//! Feeds every measured transfer to a [`Learner`] on its own thread, off the transfer's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perf_core::{MetricsSink, TransferMetrics};

use crate::learner::Learner;

/// Records waiting for the learner before new ones are dropped (and counted).
pub const FEED_QUEUE: usize = 4096;
/// How often the feed publishes a new model version at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A `MetricsSink` that hands records to a thread updating a [`Learner`] in
/// batches (one new version per batch, at most every 100 ms).
///
/// `record` never blocks: a full queue drops the record and counts it
/// ([`CostModelFeed::dropped`]). A failed transfer is no evidence of either
/// method's speed, so it is skipped before the queue and counted
/// ([`CostModelFeed::failed`]). Dropping the feed learns from what is queued and
/// stops the thread.
pub struct CostModelFeed {
    // `None` tells the thread to stop after what is queued before it.
    sender: SyncSender<Option<TransferMetrics>>,
    learner: Arc<Learner>,
    dropped: AtomicU64,
    failed: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for CostModelFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostModelFeed")
            .field("version", &self.learner.version())
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl CostModelFeed {
    /// Starts the feeding thread for `learner`, with a queue of [`FEED_QUEUE`] records.
    pub fn start(learner: Arc<Learner>) -> CostModelFeed {
        CostModelFeed::with_queue(learner, FEED_QUEUE)
    }

    /// Starts the feeding thread for `learner`, with room for `queue` records
    /// (at least one). A thread that cannot be started leaves every record
    /// dropped and counted.
    pub fn with_queue(learner: Arc<Learner>, queue: usize) -> CostModelFeed {
        let (sender, receiver) = sync_channel(queue.max(1));
        let fed = learner.clone();
        let thread = std::thread::Builder::new()
            .name("perfopt-cost-models".into())
            .spawn(move || feed(&fed, &receiver))
            .ok();
        CostModelFeed {
            sender,
            learner,
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            thread: Mutex::new(thread),
        }
    }

    /// The learner this feed updates.
    pub fn learner(&self) -> &Arc<Learner> {
        &self.learner
    }

    /// Records dropped because the learner fell behind (or the feed had finished).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Failed transfers skipped: their latency is no evidence.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops the thread after it has learned from everything queued; later
    /// records are dropped and counted. Calling it again does nothing.
    pub fn finish(&self) {
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // A failed send means the thread is gone already.
            let _ = self.sender.send(None);
            let _ = t.join();
        }
    }
}

fn feed(learner: &Learner, receiver: &Receiver<Option<TransferMetrics>>) {
    let mut batch = Vec::new();
    let mut last = Instant::now();
    loop {
        match receiver.recv_timeout(PUBLISH_EVERY) {
            Ok(Some(m)) => batch.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                learner.update_batch(&batch);
                return;
            }
        }
        if !batch.is_empty() && last.elapsed() >= PUBLISH_EVERY {
            learner.update_batch(&batch);
            batch.clear();
            last = Instant::now();
        }
    }
}

impl MetricsSink for CostModelFeed {
    fn record(&self, metrics: &TransferMetrics) {
        if !metrics.is_evidence() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Some(*metrics))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CostModelFeed {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use perf_core::{FailureKind, Method};

    use super::*;
    use crate::model::ModelConfig;
    use crate::synthetic::{SyntheticModel, samples};

    fn grpc() -> SyntheticModel {
        SyntheticModel {
            method: Method::Grpc,
            fixed_us: 95.0,
            cached_us_per_mib: 350.0,
            bulk_us_per_mib: 1100.0,
            knot_bytes: 2 << 20,
            noise: 0.02,
        }
    }

    /// Every second record failed, with a latency far from the model's.
    fn half_failed(n: usize) -> Vec<TransferMetrics> {
        let mut records = samples(&grpc(), n, 5);
        for m in records.iter_mut().step_by(2) {
            m.fail(FailureKind::Timeout);
            m.latency_us = 30e6;
        }
        records
    }

    fn learner() -> Arc<Learner> {
        Arc::new(Learner::new("test", ModelConfig::default()).unwrap())
    }

    #[test]
    fn the_feed_skips_and_counts_failed_records_and_learns_from_the_rest() {
        let feed = CostModelFeed::start(learner());
        for m in half_failed(200) {
            feed.record(&m);
        }
        feed.finish();
        assert_eq!(feed.failed(), 100);
        assert_eq!(feed.dropped(), 0);
        let learner = feed.learner();
        assert_eq!(learner.samples(), 100);
        assert!(learner.version() > 0);
        // The learner never saw a failed record.
        assert_eq!(learner.failed_skipped(), 0);
        // After finish, records are dropped and counted, never block.
        feed.record(&samples(&grpc(), 1, 9)[0]);
        assert_eq!(feed.dropped(), 1);
    }

    #[test]
    fn update_batch_skips_and_counts_failed_records() {
        let learner = learner();
        let used = learner.update_batch(&half_failed(200));
        assert_eq!(used, 100);
        assert_eq!(learner.failed_skipped(), 100);
        assert_eq!(learner.samples(), 100);
        let only_failed: Vec<_> = half_failed(10).into_iter().step_by(2).collect();
        let version = learner.version();
        assert!(!learner.update(&only_failed[0]));
        assert_eq!(
            learner.version(),
            version,
            "a failed record publishes nothing"
        );
        assert_eq!(learner.failed_skipped(), 101);
    }

    #[test]
    fn a_record_that_names_a_failure_is_no_evidence_even_if_marked_delivered() {
        let learner = learner();
        let mut m = samples(&grpc(), 1, 3)[0];
        m.failure = Some(FailureKind::Corrupted);
        assert!(!learner.update(&m));
        assert_eq!(learner.failed_skipped(), 1);
        assert_eq!(learner.version(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let feed = CostModelFeed::with_queue(learner(), 1);
        let records = samples(&grpc(), 500, 11);
        for m in &records {
            feed.record(m);
        }
        feed.finish();
        let learned = feed.learner().samples();
        assert_eq!(
            learned + feed.dropped(),
            500,
            "every record is learned or counted"
        );
    }
}
