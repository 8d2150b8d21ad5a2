//! Where a run keeps what it learns: the metrics store (or memory), thresholds, and models.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use perf_core::{ModelStore, ThresholdStore};
use perfopt::predict::{Learner, ModelConfig};
use perfopt::store::{
    Backend as StoreBackend, MemoryBackend, RedbBackend, Retention, SinkConfig, StoreSink,
};

use crate::exit::Exit;
use crate::store_cmd::DataDirArg;

/// The metrics store a run records into: the redb store of the data
/// directory, or memory when it cannot be opened (the run goes on).
pub(super) struct RunStore {
    pub(super) sink: Arc<StoreSink>,
    pub(super) thresholds: Option<Arc<dyn ThresholdStore>>,
    pub(super) models: Option<Arc<dyn ModelStore>>,
    pub(super) where_: String,
    /// The durable store, for clean-ups while the run goes on.
    pub(super) redb: Option<RedbBackend>,
    /// Rows removed by clean-ups (default retention), at start and every
    /// [`CLEANUP_EVERY`].
    pub(super) cleaned: AtomicU64,
}

/// How often a long run removes metrics past their retention.
pub(super) const CLEANUP_EVERY: Duration = Duration::from_secs(600);

impl RunStore {
    /// Removes metrics past the default retention; a failure is a warning.
    pub(super) fn clean_up(&self) {
        if let Some(redb) = &self.redb {
            match redb.clean_up(&Retention::default(), crate::store_cmd::now()) {
                Ok(report) => {
                    self.cleaned.fetch_add(report.total(), Ordering::Relaxed);
                }
                Err(e) => eprintln!("warning: clean-up of old metrics failed: {e}"),
            }
        }
    }
}

pub(super) fn open_store(data: &DataDirArg) -> Result<RunStore, Exit> {
    let dir = data.resolve()?;
    let opened = crate::store_cmd::open(&dir);
    let (backend, thresholds, where_): (
        Arc<dyn StoreBackend>,
        Option<Arc<dyn ThresholdStore>>,
        String,
    ) = match &opened {
        Ok(redb) => {
            let thresholds: Arc<dyn ThresholdStore> = Arc::new(redb.thresholds());
            (
                Arc::new(redb.clone()),
                Some(thresholds),
                dir.path.display().to_string(),
            )
        }
        Err(e) => {
            eprintln!(
                "warning: metrics are kept in memory only: {}",
                e.message.trim_start_matches("error: ")
            );
            (
                Arc::new(MemoryBackend::default()),
                None,
                "memory".to_string(),
            )
        }
    };
    let sink = StoreSink::new(backend, SinkConfig::default()).map_err(Exit::failed)?;
    let models = opened
        .as_ref()
        .ok()
        .map(|redb| Arc::new(redb.models()) as Arc<dyn ModelStore>);
    let store = RunStore {
        sink: Arc::new(sink),
        thresholds,
        models,
        where_,
        redb: opened.ok(),
        cleaned: AtomicU64::new(0),
    };
    store.clean_up();
    Ok(store)
}

/// The learned cost models: the ones saved by the last run when they load,
/// else fresh ones (a model that does not load is reported and replaced).
pub(super) fn cost_models(store: &RunStore) -> Result<Learner, Exit> {
    let platform = crate::predict_cmd::platform();
    if let Some(models) = &store.models {
        match Learner::load(models.as_ref(), &platform, ModelConfig::default()) {
            Ok(Some(learner)) => return Ok(learner),
            Ok(None) => {}
            Err(e) => eprintln!("warning: the saved cost models are not used: {e}"),
        }
    }
    Learner::new(&platform, ModelConfig::default()).map_err(Exit::failed)
}
