//! Feeds every measured transfer of a run to the learned cost models, off the transfer's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perf_core::{MetricsSink, TransferMetrics};
use perfopt::predict::Learner;

/// Records waiting for the learner before new ones are dropped (and counted).
const QUEUE: usize = 4096;
/// How often the learner publishes a new model version at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A sink that hands records to a thread updating a [`Learner`] in batches;
/// a full queue drops the record and counts it, never stalls the transfer.
pub(crate) struct LearnFeed {
    // `None` tells the thread to stop after what is queued before it.
    sender: SyncSender<Option<TransferMetrics>>,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LearnFeed {
    /// Starts the feeding thread for `learner`.
    pub(crate) fn start(learner: Arc<Learner>) -> LearnFeed {
        let (sender, receiver) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("perfopt-learn".into())
            .spawn(move || feed(&learner, &receiver))
            .ok();
        LearnFeed {
            sender,
            dropped: AtomicU64::new(0),
            thread: Mutex::new(thread),
        }
    }

    /// Records dropped because the learner fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the thread after it has learned from everything queued.
    pub(crate) fn finish(&self) {
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

impl MetricsSink for LearnFeed {
    fn record(&self, metrics: &TransferMetrics) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Some(*metrics))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for LearnFeed {
    fn drop(&mut self) {
        self.finish();
    }
}
