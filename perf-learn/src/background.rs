//! The learning engine on its own thread, fed as a `MetricsSink`: recording never blocks (a
//! full queue drops and counts), and training never runs on the caller's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use perf_core::{MetricsSink, TransferMetrics};

use crate::engine::{LearnedClassifier, LearningEngine, Status};

/// Records waiting for the engine before new ones are dropped (and counted).
pub const QUEUE: usize = 4096;

/// A [`LearningEngine`] running on a background thread.
pub struct BackgroundEngine {
    // `None` tells the thread to stop after what is queued before it.
    sender: SyncSender<Option<TransferMetrics>>,
    engine: Arc<Mutex<LearningEngine>>,
    classifier: LearnedClassifier,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BackgroundEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundEngine")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl BackgroundEngine {
    /// Starts `engine` on its own thread.
    pub fn start(engine: LearningEngine) -> BackgroundEngine {
        let classifier = engine.classifier();
        let engine = Arc::new(Mutex::new(engine));
        let (sender, receiver) = sync_channel(QUEUE);
        let fed = engine.clone();
        let thread = std::thread::Builder::new()
            .name("perfopt-learning".into())
            .spawn(move || feed(&fed, &receiver))
            .ok();
        BackgroundEngine {
            sender,
            engine,
            classifier,
            dropped: AtomicU64::new(0),
            thread: Mutex::new(thread),
        }
    }

    /// The classifier to hand to the controller.
    pub fn classifier(&self) -> LearnedClassifier {
        self.classifier.clone()
    }

    /// The engine, locked (it is locked by the feeding thread while it learns).
    pub fn engine(&self) -> MutexGuard<'_, LearningEngine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the engine stands.
    pub fn status(&self) -> Status {
        self.engine().status()
    }

    /// Records dropped because the engine fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the thread after it has learned from everything queued.
    pub fn finish(&self) {
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // A failed send means the thread is gone already.
            let _ = self.sender.send(None);
            let _ = t.join();
        }
    }
}

fn feed(engine: &Mutex<LearningEngine>, receiver: &Receiver<Option<TransferMetrics>>) {
    let mut batch = Vec::with_capacity(256);
    while let Ok(Some(m)) = receiver.recv() {
        batch.push(m);
        // Take what else is waiting, then learn from it under one lock.
        let mut stop = false;
        while batch.len() < 256 {
            match receiver.try_recv() {
                Ok(Some(m)) => batch.push(m),
                Ok(None) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut e = engine.lock().unwrap_or_else(|e| e.into_inner());
        for m in batch.drain(..) {
            e.observe(&m);
        }
        drop(e);
        if stop {
            return;
        }
    }
}

impl MetricsSink for BackgroundEngine {
    fn record(&self, metrics: &TransferMetrics) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Some(*metrics))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for BackgroundEngine {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LearnConfig;
    use crate::synthetic::{Physics, Workload};

    #[test]
    fn it_learns_from_what_is_recorded_and_stops_cleanly() {
        let engine = LearningEngine::new(LearnConfig {
            min_samples: 200,
            ..LearnConfig::default()
        });
        let bg = BackgroundEngine::start(engine);
        let mut w = Workload::new(Physics::default(), 3);
        for _ in 0..300 {
            for m in w.live_pair() {
                // A full queue would drop: wait for room instead, as a test may.
                while bg.sender.try_send(Some(m)).is_err() {
                    std::thread::yield_now();
                }
            }
        }
        bg.finish();
        let s = bg.status();
        assert_eq!(s.observed, 600);
        assert!(s.paired >= 290, "{s:?}");
        assert!(s.active, "{s:?}");
        assert!(bg.classifier().model().is_some());
        // After finish, records are dropped and counted, never block.
        bg.record(&w.live_pair()[0]);
        assert_eq!(bg.dropped(), 1);
    }
}
