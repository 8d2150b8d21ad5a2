//! What a data directory's metrics store holds for the learned parts, read or trained without
//! an optimizer: the classifier, paired evidence from the stored transfers, and cost models.
//!
//! Reading never creates a store: a data directory without one reads as empty.

use std::path::{Path, PathBuf};

use perf_store::{RedbReader, StoreError, StoreFile};

/// Why the store of a data directory could not be read, or what was asked of it failed.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// The store could not be opened or read.
    #[error("{}: {source}", path.display())]
    Store {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        source: StoreError,
    },
    /// The classifier could not be trained.
    #[cfg(feature = "learn")]
    #[error(transparent)]
    Learn(perf_learn::LearnError),
    /// The cost models could not be made.
    #[cfg(feature = "predict")]
    #[error(transparent)]
    Predict(perf_predict::PredictError),
    /// The experiment's report could not be made.
    #[cfg(feature = "abtest")]
    #[error(transparent)]
    Experiment(perf_abtest::ReportError),
    /// The candidate configuration makes no controller, or the calibration for its model
    /// does not load.
    #[cfg(feature = "abtest")]
    #[error("{0}")]
    Candidate(String),
}

fn store_error(data_dir: &Path) -> impl FnOnce(StoreError) -> StoredError + '_ {
    move |source| StoredError::Store {
        path: data_dir.to_path_buf(),
        source,
    }
}

/// The store in `data_dir` opened for reading (it works on a read-only filesystem), or `None`
/// when there is none yet; a path that is not a regular file is an error, never taken for a
/// missing store.
fn reader(data_dir: &Path) -> Result<Option<RedbReader>, StoredError> {
    match perf_store::db::inspect(&perf_store::db::store_file(data_dir)) {
        StoreFile::Missing => Ok(None),
        _ => RedbReader::open(data_dir)
            .map(Some)
            .map_err(store_error(data_dir)),
    }
}

#[cfg(feature = "learn")]
pub use self::learn::{
    StoredClassifier, StoredPairs, Training, stored_classifier, stored_pairs, train_classifier,
};

#[cfg(feature = "learn")]
mod learn {
    use std::path::Path;
    use std::sync::Arc;

    use perf_core::{ModelStore, SampleFilter};
    use perf_learn::{
        Classifier, Evaluation, EventKind, LearnConfig, LearningEngine, MODEL_NAME, PairedSample,
        Trigger,
    };
    use perf_store::{Backend as _, RedbBackend};

    use super::{StoredError, reader, store_error};
    use crate::optimizer::now;

    /// The learned classifier a data directory's store holds: the newest saved one, as a run
    /// with learning on would start from.
    #[derive(Debug, Clone, Default)]
    pub struct StoredClassifier {
        /// The newest saved model, when it loads and checks.
        pub model: Option<Classifier>,
        /// Why the newest saved model is not used, when it does not load.
        pub problem: Option<String>,
        /// Saved versions kept in the store.
        pub versions: usize,
    }

    /// The classifier saved in `data_dir`'s store; nothing when there is no store or no model.
    /// A model that does not load is reported in [`StoredClassifier::problem`], not used.
    pub fn stored_classifier(data_dir: &Path) -> Result<StoredClassifier, StoredError> {
        let Some(reader) = reader(data_dir)? else {
            return Ok(StoredClassifier::default());
        };
        let versions = reader
            .list_models()
            .map(|l| l.into_iter().filter(|m| m.name == MODEL_NAME).count())
            .unwrap_or(0);
        let (model, problem) = match reader.load_model(MODEL_NAME) {
            Ok(None) => (None, None),
            Ok(Some(stored)) => match Classifier::decode(&stored.bytes) {
                Ok(mut m) => {
                    m.version = stored.version;
                    (Some(m), None)
                }
                Err(e) => (None, Some(format!("{MODEL_NAME} v{}: {e}", stored.version))),
            },
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(StoredClassifier {
            model,
            problem,
            versions,
        })
    }

    /// Paired evidence from the transfers stored in a data directory.
    #[derive(Debug, Clone, Default)]
    pub struct StoredPairs {
        /// Pairs of transfers of both methods, of one size class and close in time, as the
        /// learning engine pairs them live.
        pub samples: Vec<PairedSample>,
        /// Stored transfers read.
        pub transfers: usize,
    }

    /// Pairs the newest `max` transfers stored in `data_dir` (oldest first), as the learning
    /// engine does live; nothing when there is no store.
    pub fn stored_pairs(data_dir: &Path, max: usize) -> Result<StoredPairs, StoredError> {
        let Some(reader) = reader(data_dir)? else {
            return Ok(StoredPairs::default());
        };
        let mut stored = reader
            .samples(&SampleFilter::default(), max)
            .map_err(store_error(data_dir))?;
        stored.reverse();
        let mut engine = LearningEngine::new(LearnConfig {
            enabled: false,
            max_samples: max,
            ..LearnConfig::default()
        });
        for m in &stored {
            engine.observe(m);
        }
        Ok(StoredPairs {
            samples: engine.samples().copied().collect(),
            transfers: stored.len(),
        })
    }

    /// What [`train_classifier`] did.
    #[derive(Debug, Clone)]
    pub struct Training {
        /// The trained model's held-out validation.
        pub validation: Evaluation,
        /// The version it was saved as, when it passed validation.
        pub published: Option<u64>,
        /// The learning engine's event for it (published, rejected, save failed).
        pub event: Option<EventKind>,
    }

    /// Trains the classifier on `samples` (split 80/20 with `seed` into training and held-out
    /// validation) and saves it in `data_dir`'s store (created if need be) when it passes the
    /// validation a run's learning engine applies; a run with learning on then starts from it.
    pub fn train_classifier(
        data_dir: &Path,
        samples: &[PairedSample],
        seed: u64,
    ) -> Result<Training, StoredError> {
        let backend = RedbBackend::open(data_dir).map_err(store_error(data_dir))?;
        let store: Arc<dyn ModelStore> = Arc::new(backend.models());
        let config = LearnConfig {
            // Training is asked for here: no threshold for the first model.
            min_samples: usize::MAX,
            max_samples: samples.len().max(1),
            seed,
            ..LearnConfig::default()
        };
        let mut engine = LearningEngine::new(config).with_store(store, now());
        engine.add_paired(samples);
        let validation = engine
            .train(Trigger::Requested, now())
            .map_err(StoredError::Learn)?;
        let event = engine.events().last().map(|e| e.kind.clone());
        let published =
            matches!(event, Some(EventKind::Published { .. })).then(|| engine.status().version);
        Ok(Training {
            validation,
            published,
            event,
        })
    }
}

#[cfg(feature = "predict")]
pub use self::predict::{StoredCostModels, stored_cost_models};

#[cfg(feature = "abtest")]
pub use self::experiments::{
    MAX_EXPERIMENT_RECORDS, ReportFailure, StoredReport, experiment_report_from,
    stored_experiment_report,
};

#[cfg(feature = "abtest")]
pub use self::offline::{OfflineRun, stored_offline_evaluation};

#[cfg(feature = "abtest")]
mod offline {
    use std::path::Path;

    use perf_abtest::offline::{LoggedDecision, Model, OfflineEvaluation, evaluate};
    use perf_core::{
        Config, Controller, DecisionContext, SampleFilter, TransferRequest, ZeroCopyAvailability,
    };
    use perf_store::Backend as _;

    use super::{StoredError, reader, store_error};

    /// A candidate configuration evaluated offline on a data directory's logged transfers.
    #[derive(Debug, Clone, PartialEq, serde::Serialize)]
    pub struct OfflineRun {
        /// The estimates, `None` when the store holds fewer than two usable transfers or the
        /// candidate takes none of the logged actions.
        pub evaluation: Option<OfflineEvaluation>,
        /// Why there is no evaluation, when there is none.
        pub problem: Option<String>,
        /// Logged transfers read (delivered ones: a failed transfer's latency is no outcome of
        /// its method).
        pub transfers: usize,
        /// Whether the cost coefficients of the direct model came from the data directory's
        /// calibration profile (else from the candidate's configuration).
        pub calibrated_model: bool,
    }

    /// Estimates the mean latency `candidate` would have had on the newest `limit` delivered
    /// transfers that pass `filter` in `data_dir`'s store, from their logged decisions and
    /// propensities (read only; no store is created). The candidate decides each logged
    /// request in its logged context without exploring; the direct model of the doubly robust
    /// estimator is the candidate's cost estimate, with the data directory's calibration
    /// profile where the candidate states no costs of its own.
    pub fn stored_offline_evaluation(
        data_dir: &Path,
        candidate: &Config,
        filter: &SampleFilter,
        limit: usize,
        alpha: f64,
    ) -> Result<OfflineRun, StoredError> {
        let calibration = crate::data_dir_calibration(data_dir).map_err(|e| {
            StoredError::Candidate(format!("the data directory's calibration: {e}"))
        })?;
        let mut builder = Controller::builder(candidate.clone());
        if let Some(costs) = &calibration {
            builder = builder.calibration(*costs);
        }
        let controller = builder
            .build()
            .map_err(|e| StoredError::Candidate(format!("the candidate configuration: {e}")))?;
        let records = match reader(data_dir)? {
            Some(reader) => reader
                .evidence(filter, limit)
                .map_err(store_error(data_dir))?,
            None => Vec::new(),
        };
        let logged: Vec<LoggedDecision> = records
            .iter()
            .map(|m| {
                let request = TransferRequest::new(m.size)
                    .with_pool(m.pool)
                    .with_data_type(m.data_type)
                    .with_format(m.format)
                    .with_compression(m.compression)
                    .with_session(m.session);
                let ctx = DecisionContext {
                    now: m.started_at,
                    system: m.system,
                    zero_copy: ZeroCopyAvailability::Pooled,
                };
                let estimates = controller.estimate(&request, &ctx);
                LoggedDecision {
                    action: m.decided_method,
                    propensity: m.propensity,
                    outcome: m.latency_us,
                    candidate: controller.preview(&request, &ctx).method,
                    model: Model {
                        zero_copy: estimates.zero_copy.latency_us,
                        grpc: estimates.grpc.latency_us,
                    },
                }
            })
            .collect();
        let (evaluation, problem) = match evaluate(&logged, alpha) {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(OfflineRun {
            evaluation,
            problem,
            transfers: records.len(),
            calibrated_model: calibration.is_some(),
        })
    }
}

#[cfg(feature = "abtest")]
mod experiments {
    use std::path::Path;

    use super::{StoredError, reader};
    use perf_abtest::ExperimentReport;
    use perf_core::config::Experiment;
    use perf_core::{SampleFilter, Timestamp};

    /// The most records of one experiment a report reads, newest first; a report of more says
    /// it covers the newest ones only ([`StoredReport::truncated`]).
    pub const MAX_EXPERIMENT_RECORDS: usize = perf_store::db::MAX_SAMPLE_LIMIT;

    /// An experiment's report from a data directory's store.
    #[derive(Debug, Clone, PartialEq, serde::Serialize)]
    pub struct StoredReport {
        /// The report.
        #[serde(flatten)]
        pub report: ExperimentReport,
        /// Records of the experiment read, delivered or failed.
        pub records: usize,
        /// Whether there were more than [`MAX_EXPERIMENT_RECORDS`], so only the newest count.
        pub truncated: bool,
    }

    /// The report of `experiment` at `now_unix_ms` from the transfers stored in `data_dir` (read
    /// only; a directory without a store reports no transfers, and none is created).
    pub fn stored_experiment_report(
        data_dir: &Path,
        experiment: &Experiment,
        now_unix_ms: u64,
    ) -> Result<StoredReport, StoredError> {
        match reader(data_dir)? {
            Some(reader) => {
                experiment_report_from(&reader, experiment, now_unix_ms).map_err(|e| match e {
                    ReportFailure::Store(source) => StoredError::Store {
                        path: data_dir.to_path_buf(),
                        source,
                    },
                    ReportFailure::Report(e) => StoredError::Experiment(e),
                })
            }
            None => Ok(StoredReport {
                report: perf_abtest::report(experiment, &[], now_unix_ms)
                    .map_err(StoredError::Experiment)?,
                records: 0,
                truncated: false,
            }),
        }
    }

    /// Why a report from a backend failed.
    #[derive(Debug, thiserror::Error)]
    pub enum ReportFailure {
        /// The store could not be read.
        #[error(transparent)]
        Store(perf_store::StoreError),
        /// The report could not be made.
        #[error(transparent)]
        Report(perf_abtest::ReportError),
    }

    /// The report of `experiment` at `now_unix_ms` from the records `backend` holds.
    pub fn experiment_report_from(
        backend: &dyn perf_store::Backend,
        experiment: &Experiment,
        now_unix_ms: u64,
    ) -> Result<StoredReport, ReportFailure> {
        let filter = SampleFilter {
            pool: Some(experiment.pool),
            since: Timestamp(
                experiment
                    .start_unix_ms
                    .unwrap_or(0)
                    .saturating_mul(1_000_000),
            ),
            experiment: Some(experiment.name),
            ..SampleFilter::default()
        };
        let records = backend
            .samples(&filter, MAX_EXPERIMENT_RECORDS)
            .map_err(ReportFailure::Store)?;
        let report = perf_abtest::report(experiment, &records, now_unix_ms)
            .map_err(ReportFailure::Report)?;
        Ok(StoredReport {
            report,
            records: records.len(),
            truncated: records.len() == MAX_EXPERIMENT_RECORDS,
        })
    }
}

#[cfg(feature = "predict")]
mod predict {
    use std::path::Path;

    use perf_core::{Name, SampleFilter, TransferMetrics};
    use perf_predict::{Learner, ModelConfig, host_platform};
    use perf_store::Backend as _;

    use super::{StoredError, reader, store_error};

    /// Cost models trained on a data directory's stored transfers, and those transfers.
    pub struct StoredCostModels {
        /// The models, for this machine's platform.
        pub learner: Learner,
        /// The transfers they learned from, oldest first.
        pub samples: Vec<TransferMetrics>,
    }

    /// Fresh cost models with `config`, trained on the newest `limit` transfers of `pool`
    /// stored in `data_dir` that are timing evidence (oldest first); untrained when there is
    /// no store, and none is created.
    pub fn stored_cost_models(
        data_dir: &Path,
        pool: Name,
        config: ModelConfig,
        limit: usize,
    ) -> Result<StoredCostModels, StoredError> {
        let learner = Learner::new(&host_platform(), config).map_err(StoredError::Predict)?;
        let mut samples = Vec::new();
        if let Some(reader) = reader(data_dir)? {
            let filter = SampleFilter {
                pool: Some(pool),
                ..SampleFilter::default()
            };
            samples = reader
                .evidence(&filter, limit)
                .map_err(store_error(data_dir))?;
            samples.reverse();
            learner.update_batch(&samples);
        }
        Ok(StoredCostModels { learner, samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_store_reads_as_empty_and_stays_so() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(feature = "learn")]
        {
            let c = stored_classifier(dir.path()).unwrap();
            assert!(c.model.is_none() && c.problem.is_none() && c.versions == 0);
            let p = stored_pairs(dir.path(), 100).unwrap();
            assert_eq!((p.samples.len(), p.transfers), (0, 0));
        }
        #[cfg(feature = "predict")]
        {
            let m = stored_cost_models(
                dir.path(),
                perf_core::Name::DEFAULT_POOL,
                Default::default(),
                10,
            )
            .unwrap();
            assert!(m.samples.is_empty());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(feature = "learn")]
    #[test]
    fn a_trained_classifier_that_passes_is_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = perf_learn::synthetic::Workload::new(Default::default(), 5);
        let pairs = w.pairs(400);
        let t = train_classifier(dir.path(), &pairs, 7).unwrap();
        let version = t.published.expect("a synthetic machine's model passes");
        let c = stored_classifier(dir.path()).unwrap();
        assert_eq!(c.model.map(|m| m.version), Some(version));
        assert_eq!((c.problem, c.versions), (None, 1));
        assert!(matches!(
            train_classifier(dir.path(), &pairs[..3], 7),
            Err(StoredError::Learn(_))
        ));

        // An optimizer given the stored model decides with it, without learning anything.
        let model = perf_learn::LearnedClassifier::fixed(
            stored_classifier(dir.path()).unwrap().model.unwrap(),
        );
        let ctx = perf_core::DecisionContext::idle(perf_core::Timestamp(0));
        let request = perf_core::TransferRequest::new(1 << 20);
        let with = crate::Optimizer::builder()
            .classifier(std::sync::Arc::new(model))
            .build()
            .unwrap();
        let d = with.controller().preview(&request, &ctx);
        assert!(
            matches!(d.reason, perf_core::Reason::Learned { .. }),
            "{d:?}"
        );
        let without = crate::Optimizer::builder().build().unwrap();
        let d = without.controller().preview(&request, &ctx);
        assert!(
            !matches!(d.reason, perf_core::Reason::Learned { .. }),
            "{d:?}"
        );
    }
}
