//! The learned cost models: restored at start, fed every transfer, given to the engine as its
//! predictor, and saved at stop.

use std::sync::Arc;

use perf_core::ModelStore;
use perf_predict::{CostModelFeed, Learner, ModelConfig, PredictError, host_platform};
use serde::Serialize;

use super::{OptimizerError, now};

/// Where the cost models the optimizer started with came from.
#[derive(Debug, Clone, PartialEq)]
pub enum CostModelsOrigin {
    /// The models saved by the last run in the data directory.
    Restored {
        /// Their version.
        version: u64,
        /// Transfers they had learned from.
        samples: u64,
    },
    /// Fresh models: none were saved, or nothing persists.
    Fresh,
    /// Fresh models, because the saved ones do not load (damaged, another
    /// platform or layout); they are replaced at the next save.
    Unreadable {
        /// Why they do not load.
        error: PredictError,
    },
}

/// The learned cost models at work, and where they persist.
pub(crate) struct CostModels {
    pub(crate) feed: Arc<CostModelFeed>,
    pub(crate) origin: CostModelsOrigin,
    store: Option<Arc<dyn ModelStore>>,
}

impl CostModels {
    /// The models saved in `store` when they load, else fresh ones, with
    /// `config`; the feed is started.
    pub(crate) fn restore(
        store: Option<Arc<dyn ModelStore>>,
        config: ModelConfig,
    ) -> Result<CostModels, OptimizerError> {
        let platform = host_platform();
        let loaded = match &store {
            Some(models) => Learner::load(models.as_ref(), &platform, config),
            None => Ok(None),
        };
        let (learner, origin) = match loaded {
            Ok(Some(learner)) => {
                let origin = CostModelsOrigin::Restored {
                    version: learner.version(),
                    samples: learner.samples(),
                };
                (learner, origin)
            }
            Ok(None) => (fresh(&platform, config)?, CostModelsOrigin::Fresh),
            Err(error) => (
                fresh(&platform, config)?,
                CostModelsOrigin::Unreadable { error },
            ),
        };
        Ok(CostModels {
            feed: Arc::new(CostModelFeed::start(Arc::new(learner))),
            origin,
            store,
        })
    }

    /// Learns from what is queued, stops the feed and saves the models where
    /// they persist.
    pub(crate) fn finish(&self) -> CostModelsReport {
        self.feed.finish();
        let learner = self.feed.learner();
        let saved = self
            .store
            .as_ref()
            .map(|store| learner.save(store.as_ref(), now()));
        CostModelsReport {
            version: learner.version(),
            samples: learner.samples(),
            saved_as: saved.as_ref().and_then(|r| r.as_ref().ok().copied()),
            save_error: saved.and_then(|r| r.err()).map(|e| e.to_string()),
            dropped: self.feed.dropped(),
            failed_skipped: self.feed.failed() + learner.failed_skipped(),
        }
    }
}

fn fresh(platform: &str, config: ModelConfig) -> Result<Learner, OptimizerError> {
    Learner::new(platform, config).map_err(OptimizerError::CostModels)
}

/// What became of the cost models at stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostModelsReport {
    /// The published version.
    pub version: u64,
    /// Transfers the models have learned from, over every model.
    pub samples: u64,
    /// The store's version number of the saved models, when they were saved.
    pub saved_as: Option<u64>,
    /// Why they could not be saved, when they could not.
    pub save_error: Option<String>,
    /// Records dropped because the models fell behind.
    pub dropped: u64,
    /// Failed transfers skipped: their latency is no evidence.
    pub failed_skipped: u64,
}
