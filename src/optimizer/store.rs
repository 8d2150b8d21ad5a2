//! Where transfer records go: the redb store of a data directory, or memory (when no directory
//! is given, or when its store cannot be opened, said aloud), and the scheduled retention.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use perf_core::ThresholdStore;
use perf_store::{
    Backend, MemoryBackend, RedbBackend, Retention, SinkConfig, StoreError, StoreQuery, StoreSink,
};
use serde::Serialize;

use super::{OptimizerError, now};

/// How often retention runs by default while the optimizer lives.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// Where the optimizer's transfer records go (see [`crate::Optimizer::store_status`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreStatus {
    /// The redb store of a data directory: records, thresholds and models persist.
    Persistent {
        /// The data directory.
        dir: PathBuf,
    },
    /// Memory, since no data directory was given: queries answer, nothing persists.
    Memory,
    /// Memory, because the data directory's store could not be opened: queries
    /// answer, nothing persists (thresholds and models included).
    Fallback {
        /// The data directory asked for.
        dir: PathBuf,
        /// Why its store could not be opened.
        reason: StoreError,
    },
}

impl StoreStatus {
    /// Whether records persist in a data directory.
    pub fn is_persistent(&self) -> bool {
        matches!(self, StoreStatus::Persistent { .. })
    }

    /// The data directory asked for, if any.
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            StoreStatus::Persistent { dir } | StoreStatus::Fallback { dir, .. } => Some(dir),
            StoreStatus::Memory => None,
        }
    }
}

impl std::fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreStatus::Persistent { dir } => write!(f, "metrics store in {}", dir.display()),
            StoreStatus::Memory => f.write_str("memory (no data directory)"),
            StoreStatus::Fallback { dir, reason } => write!(
                f,
                "memory: the metrics store in {} cannot be opened: {reason}",
                dir.display()
            ),
        }
    }
}

impl Serialize for StoreStatus {
    /// `{"kind": "persistent" | "memory" | "fallback", "data_dir": .., "reason": ..}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            kind: &'static str,
            data_dir: Option<&'a Path>,
            reason: Option<String>,
        }
        let (kind, reason) = match self {
            StoreStatus::Persistent { .. } => ("persistent", None),
            StoreStatus::Memory => ("memory", None),
            StoreStatus::Fallback { reason, .. } => ("fallback", Some(reason.to_string())),
        };
        Shape {
            kind,
            data_dir: self.data_dir(),
            reason,
        }
        .serialize(s)
    }
}

/// The store the optimizer records into, and what of it persists.
pub(crate) struct OpenStore {
    pub(crate) status: StoreStatus,
    pub(crate) sink: Arc<StoreSink>,
    pub(crate) query: Arc<StoreQuery>,
    /// The durable store, when the data directory's store opened.
    pub(crate) redb: Option<RedbBackend>,
}

impl OpenStore {
    /// Opens the store of `dir`, or memory when there is none or (unless
    /// `require`) it cannot be opened.
    pub(crate) fn open(dir: Option<PathBuf>, require: bool) -> Result<OpenStore, OptimizerError> {
        let (status, redb) = match dir {
            None => (StoreStatus::Memory, None),
            Some(dir) => match RedbBackend::open(&dir) {
                Ok(redb) => (StoreStatus::Persistent { dir }, Some(redb)),
                Err(source) if require => {
                    return Err(OptimizerError::Store { path: dir, source });
                }
                Err(reason) => (StoreStatus::Fallback { dir, reason }, None),
            },
        };
        let backend: Arc<dyn Backend> = match &redb {
            Some(redb) => Arc::new(redb.clone()),
            None => Arc::new(MemoryBackend::default()),
        };
        let sink =
            StoreSink::new(backend.clone(), SinkConfig::default()).map_err(
                |source| match status.data_dir().filter(|_| redb.is_some()) {
                    Some(dir) => OptimizerError::Store {
                        path: dir.to_path_buf(),
                        source,
                    },
                    None => OptimizerError::MemoryStore(source),
                },
            )?;
        Ok(OpenStore {
            status,
            sink: Arc::new(sink),
            query: Arc::new(StoreQuery::new(backend)),
            redb,
        })
    }

    /// The threshold log, when thresholds persist.
    pub(crate) fn thresholds(&self) -> Option<Arc<dyn ThresholdStore>> {
        self.redb
            .as_ref()
            .map(|r| Arc::new(r.thresholds()) as Arc<dyn ThresholdStore>)
    }

    /// The model store, when models persist.
    #[cfg(any(feature = "learn", feature = "predict"))]
    pub(crate) fn models(&self) -> Option<Arc<dyn perf_core::ModelStore>> {
        self.redb
            .as_ref()
            .map(|r| Arc::new(r.models()) as Arc<dyn perf_core::ModelStore>)
    }
}

/// What retention has done since the optimizer started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Rows (raw samples and buckets) removed in all.
    pub cleaned_rows: u64,
    /// Clean-ups that ran, the one at start included.
    pub runs: u64,
    /// Clean-ups that failed.
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Tally {
    cleaned_rows: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Tally {
    /// Removes rows past `retention` now, and counts the outcome.
    fn clean(&self, redb: &RedbBackend, retention: &Retention) -> Result<u64, StoreError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        match redb.clean_up(retention, now()) {
            Ok(report) => {
                self.cleaned_rows
                    .fetch_add(report.total(), Ordering::Relaxed);
                Ok(report.total())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn report(&self) -> RetentionReport {
        RetentionReport {
            cleaned_rows: self.cleaned_rows.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Retention of a durable store: one clean-up at start, then one every
/// interval on a background thread until stopped.
pub(crate) struct Cleaner {
    tally: Arc<Tally>,
    // Dropping the sender wakes and stops the thread.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Cleaner {
    /// Cleans `redb` now, then every `every`; returns the start clean-up's error, if any.
    pub(crate) fn start(
        redb: RedbBackend,
        retention: Retention,
        every: Duration,
    ) -> (Cleaner, Option<StoreError>) {
        let tally = Arc::new(Tally::default());
        let first = tally.clean(&redb, &retention).err();
        let (stop, stopped) = channel();
        let counted = tally.clone();
        let thread = std::thread::Builder::new()
            .name("perfopt-retention".into())
            .spawn(move || schedule(&redb, &retention, every, &counted, &stopped));
        let (thread, spawn_error) = match thread {
            Ok(t) => (Some(t), None),
            Err(e) => (
                None,
                Some(StoreError::Io(format!(
                    "cannot start the retention thread: {e}"
                ))),
            ),
        };
        let cleaner = Cleaner {
            tally,
            stop: Some(stop),
            thread,
        };
        (cleaner, first.or(spawn_error))
    }

    /// What retention has done so far.
    pub(crate) fn report(&self) -> RetentionReport {
        self.tally.report()
    }

    /// Stops the thread (a clean-up under way finishes first) and reports.
    pub(crate) fn stop(&mut self) -> RetentionReport {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // A panicked clean-up has nothing left to do.
            let _ = t.join();
        }
        self.report()
    }
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        self.stop();
    }
}

fn schedule(
    redb: &RedbBackend,
    retention: &Retention,
    every: Duration,
    tally: &Tally,
    stopped: &Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        // A failure is counted and kept for the report; the next run tries again.
        let _ = tally.clean(redb, retention);
    }
}
