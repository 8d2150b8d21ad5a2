//! The builder that wires configuration, engine, store, learning, cost models, shared memory and
//! retention into one optimizer, and the optimizer that decides, records and stops cleanly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perf_core::{
    Config, ConfigErrors, Controller, ControllerBuilder, Decision, DecisionContext,
    DecisionFunction, MethodClassifier, MetricsQuery, MetricsSink, Name, Predictor, ResourceProbe,
    ThresholdStore, Timestamp, TransferMetrics, TransferRequest, ZeroCopyAvailability,
};

use crate::calibration::CalibrationStatus;
use crate::watch::{ConfigWatcher, ReloadCallback, ReloadEvent};

#[cfg(feature = "predict")]
mod cost_models;
mod error;
mod files;
#[cfg(feature = "monitor")]
mod monitor;
mod report;
#[cfg(feature = "transport")]
mod segment_pool;
#[cfg(feature = "transport")]
mod shm;
#[cfg(feature = "store")]
mod store;

#[cfg(feature = "predict")]
pub use cost_models::{CostModelsOrigin, CostModelsReport};
pub use error::OptimizerError;
pub use files::{load_config, load_profile};
pub(crate) use files::{parse_config, read_bounded, read_config};
#[cfg(feature = "monitor")]
pub use monitor::{Tally, TallyCounts};
#[cfg(feature = "learn")]
pub use report::LearningReport;
pub use report::ShutdownReport;
#[cfg(feature = "store")]
pub use report::StoreReport;
#[cfg(feature = "transport")]
pub use segment_pool::segment_pool;
#[cfg(feature = "transport")]
pub use shm::{ShmStatus, SweepOutcome};
#[cfg(feature = "store")]
pub use store::{CLEANUP_EVERY, RetentionReport, StoreStatus};

/// A user's decision function, as registered with the builder.
#[derive(Clone)]
struct Function {
    name: Name,
    priority: i32,
    pools: Vec<Name>,
    function: Arc<dyn DecisionFunction>,
}

/// What the engine and the fixed-thresholds policy are both built from.
#[derive(Clone)]
struct EngineParts {
    functions: Vec<Function>,
    seed: Option<u64>,
    metrics: Arc<dyn MetricsQuery>,
}

impl EngineParts {
    /// A controller builder for `config` with the functions, seed and metrics query.
    fn builder(&self, config: Config) -> ControllerBuilder {
        let mut builder = Controller::builder(config).metrics(self.metrics.clone());
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        for f in &self.functions {
            builder = builder.function(f.name, f.priority, &f.pools, f.function.clone());
        }
        builder
    }
}

/// Assembles an [`Optimizer`].
///
/// With every feature on, a data directory and learning, it wires what
/// `perfopt run` wires: the metrics store (memory when it cannot be opened,
/// said aloud), retention at start and on a schedule, the learned cost models
/// restored, fed and saved, the learning engine replaying stored history, the
/// threshold log, and the shared-memory backend after its start-up sweep with
/// a segment pool.
pub struct OptimizerBuilder {
    config: Config,
    config_file: Option<PathBuf>,
    watch: Option<Duration>,
    on_reload: Option<ReloadCallback>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    zero_copy: ZeroCopyAvailability,
    predictor: Option<Arc<dyn Predictor>>,
    classifier: Option<Arc<dyn MethodClassifier>>,
    metrics: Option<Arc<dyn MetricsQuery>>,
    threshold_store: Option<Arc<dyn ThresholdStore>>,
    functions: Vec<Function>,
    seed: Option<u64>,
    #[cfg(feature = "store")]
    data_dir: Option<PathBuf>,
    #[cfg(feature = "store")]
    require_store: bool,
    #[cfg(feature = "store")]
    retention: perf_store::Retention,
    #[cfg(feature = "store")]
    cleanup_every: Duration,
    #[cfg(feature = "learn")]
    learning: Option<perf_learn::LearnConfig>,
    #[cfg(feature = "predict")]
    cost_models: Option<bool>,
    #[cfg(feature = "transport")]
    shm: shm::ShmSettings,
    #[cfg(feature = "monitor")]
    decision_log: Option<perf_monitor::DecisionLogConfig>,
}

impl OptimizerBuilder {
    /// Runs `config` (the default configuration otherwise).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Reads the configuration from `path` at build time.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Watches the configuration file and reloads it when it changes, checking
    /// every `interval`; an invalid file is reported and never applied.
    pub fn watch(mut self, interval: Duration) -> Self {
        self.watch = Some(interval);
        self
    }

    /// Calls `f` after every reload attempt of the watched file.
    pub fn on_reload(mut self, f: impl Fn(&ReloadEvent) + Send + Sync + 'static) -> Self {
        self.on_reload = Some(Box::new(f));
        self
    }

    /// Sends every transfer record to `sink` too.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Reads resources from `probe` (the machine's own probe otherwise, on Linux).
    pub fn probe(mut self, probe: Arc<dyn ResourceProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Uses `predictor` for learned estimates once it is confident, instead of
    /// the learned cost models' predictor (the cost models, when on, still
    /// learn and persist).
    pub fn predictor(mut self, predictor: Arc<dyn Predictor>) -> Self {
        self.predictor = Some(predictor);
        self
    }

    /// Lets `classifier` pick the method in the cost-analysis step (pools with
    /// `learning = true`) instead of the learning engine's classifier, e.g. a
    /// model read with `perfopt::stored_classifier` that should decide without
    /// learning anything more.
    pub fn classifier(mut self, classifier: Arc<dyn MethodClassifier>) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Gives decision functions access to `metrics` instead of the optimizer's
    /// own store ([`Optimizer::metrics`] still answers from the store).
    pub fn metrics_query(mut self, metrics: Arc<dyn MetricsQuery>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Persists thresholds and their history in `store` instead of the data
    /// directory's store.
    pub fn threshold_store(mut self, store: Arc<dyn ThresholdStore>) -> Self {
        self.threshold_store = Some(store);
        self
    }

    /// Adds a user-defined decision function at `priority` among the rules.
    pub fn function(
        mut self,
        name: Name,
        priority: i32,
        pools: &[Name],
        f: Arc<dyn DecisionFunction>,
    ) -> Self {
        self.functions.push(Function {
            name,
            priority,
            pools: pools.to_vec(),
            function: f,
        });
        self
    }

    /// Records every transfer into the metrics store in `dir` (redb), answers
    /// decision functions' queries from it, keeps thresholds and their history
    /// there so they survive a restart, removes rows past their retention, and
    /// (unless [`OptimizerBuilder::cost_models`] says otherwise) keeps the
    /// learned cost models there.
    ///
    /// When the store cannot be opened, records go to memory and
    /// [`Optimizer::store_status`] and [`Optimizer::warnings`] say why;
    /// [`OptimizerBuilder::require_store`] makes it an error instead. Without a
    /// data directory, records go to memory too.
    #[cfg(feature = "store")]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Makes a data directory whose store cannot be opened an error
    /// ([`OptimizerError::Store`]) rather than a fall-back to memory.
    #[cfg(feature = "store")]
    pub fn require_store(mut self) -> Self {
        self.require_store = true;
        self
    }

    /// How long rows of the data directory's store are kept (the default
    /// [`perf_store::Retention`] otherwise).
    #[cfg(feature = "store")]
    pub fn retention(mut self, retention: perf_store::Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How often retention runs while the optimizer lives, besides once at
    /// start ([`CLEANUP_EVERY`], 10 minutes, by default); zero is refused.
    #[cfg(feature = "store")]
    pub fn cleanup_every(mut self, interval: Duration) -> Self {
        self.cleanup_every = interval;
        self
    }

    /// States what shared memory can do when no transport reports it
    /// (`Pooled` by default).
    pub fn zero_copy(mut self, availability: ZeroCopyAvailability) -> Self {
        self.zero_copy = availability;
        self
    }

    /// Turns the learning engine on: it pairs recorded transfers of both
    /// methods, trains a classifier on a background thread, and lets it pick
    /// the method in the cost-analysis step once it passes validation (for
    /// pools with `learning = true`). With a data directory, models persist in
    /// its store and the newest one that loads is used from the start, and the
    /// transfers stored by earlier runs (the newest `4 * max_samples`) are
    /// replayed before the first new one.
    #[cfg(feature = "learn")]
    pub fn learning(mut self, config: perf_learn::LearnConfig) -> Self {
        self.learning = Some(config);
        self
    }

    /// Turns the learned cost models (latency, CPU and memory per pool and
    /// method) on or off. On by default with a data directory, off without
    /// one. When on, the models saved in the data directory are restored (or
    /// fresh ones made, saying why a saved one does not load), every record
    /// feeds them on a background thread, the engine uses their predictor once
    /// it is confident (pools with `learning = true`), and
    /// [`Optimizer::shutdown`] saves them. Without a store that persists they
    /// learn in memory only.
    #[cfg(feature = "predict")]
    pub fn cost_models(mut self, on: bool) -> Self {
        self.cost_models = Some(on);
        self
    }

    /// Creates named segments under `/dev/shm` (which outlive a crash until
    /// swept) instead of memfd segments; both kinds are opened either way.
    #[cfg(feature = "transport")]
    pub fn named_segments(mut self, on: bool) -> Self {
        self.shm.named = on;
        self
    }

    /// Where named segments live and what they are called (`/dev/shm`,
    /// prefix `perfopt` by default); stale ones there are swept at build.
    #[cfg(all(feature = "transport", target_os = "linux"))]
    pub fn named_segment_config(mut self, config: perf_platform::NamedShmConfig) -> Self {
        self.shm.named_config = config;
        self
    }

    /// Bytes of shared memory the segment pool may hold at once (1 GiB by default).
    #[cfg(feature = "transport")]
    pub fn shm_budget(mut self, bytes: u64) -> Self {
        self.shm.pool.budget_bytes = bytes;
        self
    }

    /// Every setting of the segment pool (this replaces an earlier
    /// [`OptimizerBuilder::shm_budget`]).
    #[cfg(feature = "transport")]
    pub fn segment_pool_config(mut self, config: perf_transport::SegmentPoolConfig) -> Self {
        self.shm.pool = config;
        self
    }

    /// How many decisions become `tracing` events (the audit log) and how many of the most
    /// recent are kept for the API. Without it, 256 are kept and the rate is the
    /// configuration's `monitor.decision_sample_rate` (1 % by default), following each reload;
    /// with it, the rate given here stays. A setting out of range fails the build.
    #[cfg(feature = "monitor")]
    pub fn decision_log(mut self, config: perf_monitor::DecisionLogConfig) -> Self {
        self.decision_log = Some(config);
        self
    }

    /// Seeds exploration, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates everything, opens the store, restores what persists, starts
    /// the background threads and the watcher, if asked for.
    pub fn build(self) -> Result<Optimizer, OptimizerError> {
        #[cfg(feature = "store")]
        if self.cleanup_every.is_zero() {
            return Err(OptimizerError::Setting {
                setting: "cleanup_every",
                expected: "an interval above zero",
                got: format!("{:?}", self.cleanup_every),
            });
        }
        #[cfg_attr(
            not(any(feature = "store", feature = "predict", feature = "transport")),
            allow(unused_mut)
        )]
        let mut warnings = Vec::new();
        let mut config = self.config;
        let mut initial_text = None;
        if let Some(path) = &self.config_file {
            let (text, read) = read_config(path)?;
            config = read;
            initial_text = Some(text);
        }
        #[cfg(not(feature = "abtest"))]
        if !config.experiments.is_empty() {
            warnings.push(format!(
                "the configuration's {} experiment(s) do not run: this build has no `abtest` feature",
                config.experiments.len()
            ));
        }

        #[cfg(feature = "transport")]
        let (segment_pool, shm_status) = shm::start(self.shm)?;
        #[cfg(feature = "transport")]
        if let SweepOutcome::Failed { error } = &shm_status.sweep {
            warnings.push(format!("stale named segments are not swept: {error}"));
        }

        #[cfg(feature = "store")]
        let (calibration, calibrated_costs) = read_calibration(self.data_dir.as_deref(), &config);
        #[cfg(not(feature = "store"))]
        let (calibration, calibrated_costs) = (CalibrationStatus::NoDataDir, None);
        if let CalibrationStatus::Unreadable { error, .. } = &calibration {
            warnings.push(format!(
                "the data directory's calibration is not used, the configuration's costs decide: {error}"
            ));
        }

        #[cfg(feature = "store")]
        let has_data_dir = self.data_dir.is_some();
        #[cfg(not(feature = "store"))]
        let has_data_dir = false;
        #[cfg(feature = "store")]
        let store = store::OpenStore::open(self.data_dir, self.require_store)?;
        #[cfg(feature = "store")]
        if let StoreStatus::Fallback { .. } = &store.status {
            warnings.push(format!("metrics are kept in {}", store.status));
        }
        #[cfg(feature = "store")]
        let cleaner = store.redb.clone().map(|redb| {
            let (cleaner, error) = store::Cleaner::start(redb, self.retention, self.cleanup_every);
            if let Some(e) = error {
                warnings.push(format!("clean-up of old metrics failed: {e}"));
            }
            cleaner
        });

        #[cfg(feature = "predict")]
        let cost_models = if self.cost_models.unwrap_or(has_data_dir) {
            #[cfg(feature = "store")]
            let models = store.models();
            #[cfg(not(feature = "store"))]
            let models = None;
            let restored =
                cost_models::CostModels::restore(models, perf_predict::ModelConfig::default())?;
            if let CostModelsOrigin::Unreadable { error } = &restored.origin {
                warnings.push(format!("the saved cost models are not used: {error}"));
            }
            Some(restored)
        } else {
            None
        };
        #[cfg(not(feature = "predict"))]
        let _ = has_data_dir;

        #[cfg(feature = "learn")]
        let engine = match self.learning {
            Some(learn) => {
                #[cfg_attr(not(feature = "store"), allow(unused_mut))]
                let mut engine = perf_learn::LearningEngine::new(learn);
                #[cfg(feature = "store")]
                {
                    if let Some(models) = store.models() {
                        engine = engine.with_store(models, now());
                    }
                    if let Err(e) = replay(&mut engine, store.redb.as_ref()) {
                        warnings.push(format!("earlier transfers are not replayed: {e}"));
                    }
                }
                Some(engine)
            }
            None => None,
        };

        #[cfg(feature = "store")]
        let own_metrics: Arc<dyn MetricsQuery> = store.query.clone();
        #[cfg(not(feature = "store"))]
        let own_metrics: Arc<dyn MetricsQuery> = Arc::new(perf_core::NoopQuery);
        let parts = EngineParts {
            functions: self.functions,
            seed: self.seed,
            metrics: self.metrics.unwrap_or(own_metrics),
        };
        #[cfg_attr(not(feature = "predict"), allow(unused_mut))]
        let mut predictor = self.predictor;
        #[cfg(feature = "predict")]
        if predictor.is_none()
            && let Some(models) = &cost_models
        {
            predictor = Some(Arc::new(models.feed.learner().predictor()));
        }
        #[cfg_attr(not(feature = "store"), allow(unused_mut))]
        let mut thresholds = self.threshold_store;
        #[cfg(feature = "store")]
        if thresholds.is_none() {
            thresholds = store.thresholds();
        }
        let mut builder = parts.builder(config);
        if let Some(p) = predictor {
            builder = builder.predictor(p);
        }
        if let Some(t) = thresholds {
            builder = builder.threshold_store(t);
        }
        #[cfg_attr(not(feature = "learn"), allow(unused_mut))]
        let mut classifier = self.classifier;
        #[cfg(feature = "learn")]
        if classifier.is_none()
            && let Some(engine) = &engine
        {
            classifier = Some(Arc::new(engine.classifier()));
        }
        if let Some(c) = classifier {
            builder = builder.classifier(c);
        }
        if let Some(costs) = calibrated_costs {
            builder = builder.calibration(costs);
        }
        let controller = Arc::new(builder.build()?);

        #[cfg_attr(
            not(any(feature = "store", feature = "predict", feature = "learn")),
            allow(unused_mut)
        )]
        let mut sinks = self.sinks;
        #[cfg(feature = "store")]
        sinks.push(store.sink.clone());
        #[cfg(feature = "predict")]
        if let Some(models) = &cost_models {
            sinks.push(models.feed.clone());
        }
        #[cfg(feature = "learn")]
        let learning = engine.map(|engine| {
            let engine = engine.with_controller(controller.clone());
            Arc::new(perf_learn::BackgroundEngine::start(engine))
        });
        #[cfg(feature = "learn")]
        if let Some(engine) = &learning {
            sinks.push(engine.clone());
        }
        #[cfg(feature = "monitor")]
        let monitor = monitor::Monitor::new(&controller, self.decision_log.as_ref())?;
        // The engine, splitting the pools that run an experiment by variant.
        #[cfg(feature = "abtest")]
        let deciding: Arc<dyn perf_core::TransferPolicy> =
            Arc::new(perf_abtest::ExperimentPolicy::new(controller.clone()));
        #[cfg(not(feature = "abtest"))]
        let deciding: Arc<dyn perf_core::TransferPolicy> = controller.clone();
        #[cfg(feature = "monitor")]
        let policy: Arc<dyn perf_core::TransferPolicy> = {
            sinks.push(monitor.telemetry.clone());
            sinks.push(monitor.tally.clone());
            Arc::new(monitor.observed(controller.clone(), deciding))
        };
        #[cfg(not(feature = "monitor"))]
        let policy: Arc<dyn perf_core::TransferPolicy> = deciding;

        let watcher = match (self.config_file, self.watch) {
            (Some(path), Some(interval)) => Some(ConfigWatcher::spawn(
                path,
                controller.clone(),
                interval,
                initial_text,
                self.on_reload,
            )),
            _ => None,
        };
        Ok(Optimizer {
            controller,
            policy,
            parts,
            sinks,
            probe: self.probe,
            zero_copy: self.zero_copy,
            warnings,
            calibration,
            stopped: false,
            #[cfg(feature = "store")]
            store,
            #[cfg(feature = "store")]
            cleaner,
            #[cfg(feature = "learn")]
            learning,
            #[cfg(feature = "predict")]
            cost_models,
            #[cfg(feature = "transport")]
            segment_pool,
            #[cfg(feature = "transport")]
            shm_status,
            #[cfg(feature = "monitor")]
            monitor,
            _watcher: watcher,
        })
    }
}

/// The calibration profile of `data_dir`, if any, with what it means for `config`.
#[cfg(feature = "store")]
fn read_calibration(
    data_dir: Option<&std::path::Path>,
    config: &Config,
) -> (CalibrationStatus, Option<perf_core::CostCoefficients>) {
    let Some(dir) = data_dir else {
        return (CalibrationStatus::NoDataDir, None);
    };
    let path = crate::calibration::calibration_path(dir);
    match crate::calibration::data_dir_calibration(dir) {
        Ok(None) => (CalibrationStatus::Missing { path }, None),
        Ok(Some(costs)) => {
            let overridden =
                config.profile.is_some() || config.costs != perf_core::CostCoefficients::default();
            (CalibrationStatus::Applied { path, overridden }, Some(costs))
        }
        Err(e) => {
            let error = e.to_string();
            (CalibrationStatus::Unreadable { path, error }, None)
        }
    }
}

/// Folds the newest `4 * max_samples` stored transfers into `engine`, oldest first.
#[cfg(all(feature = "learn", feature = "store"))]
fn replay(
    engine: &mut perf_learn::LearningEngine,
    redb: Option<&perf_store::RedbBackend>,
) -> Result<(), perf_store::StoreError> {
    use perf_store::Backend as _;

    let Some(redb) = redb else {
        return Ok(());
    };
    let limit = 4 * engine.config().max_samples;
    let mut history = redb.samples(&perf_core::SampleFilter::default(), limit)?;
    history.reverse();
    engine.replay(&history);
    Ok(())
}

/// The optimizer: decides, records, reloads, and stops cleanly.
///
/// [`Optimizer::shutdown`] flushes the store, finishes the learning engine
/// and the cost models' feed, saves the cost models, stops retention and
/// reports; dropping the optimizer does the same, best-effort, without the
/// report.
pub struct Optimizer {
    controller: Arc<Controller>,
    policy: Arc<dyn perf_core::TransferPolicy>,
    parts: EngineParts,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    zero_copy: ZeroCopyAvailability,
    warnings: Vec<String>,
    calibration: CalibrationStatus,
    stopped: bool,
    #[cfg(feature = "store")]
    store: store::OpenStore,
    #[cfg(feature = "store")]
    cleaner: Option<store::Cleaner>,
    #[cfg(feature = "learn")]
    learning: Option<Arc<perf_learn::BackgroundEngine>>,
    #[cfg(feature = "predict")]
    cost_models: Option<cost_models::CostModels>,
    #[cfg(feature = "transport")]
    segment_pool: perf_transport::SegmentPool,
    #[cfg(feature = "transport")]
    shm_status: ShmStatus,
    #[cfg(feature = "monitor")]
    monitor: monitor::Monitor,
    _watcher: Option<ConfigWatcher>,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("controller", &self.controller)
            .field("sinks", &self.sinks.len())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// The machine's own resource probe where the platform has one, else an idle machine.
fn default_probe() -> Arc<dyn ResourceProbe> {
    #[cfg(target_os = "linux")]
    {
        Arc::new(perf_platform::ProcProbe::default())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Arc::new(perf_core::FixedProbe::default())
    }
}

/// The wall clock as a [`Timestamp`].
pub(crate) fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(since.as_nanos() as u64)
}

impl Optimizer {
    /// A builder with the default configuration and Noop parts.
    pub fn builder() -> OptimizerBuilder {
        OptimizerBuilder {
            config: Config::default(),
            config_file: None,
            watch: None,
            on_reload: None,
            sinks: Vec::new(),
            probe: default_probe(),
            zero_copy: ZeroCopyAvailability::Pooled,
            predictor: None,
            classifier: None,
            metrics: None,
            threshold_store: None,
            functions: Vec::new(),
            seed: None,
            #[cfg(feature = "store")]
            data_dir: None,
            #[cfg(feature = "store")]
            require_store: false,
            #[cfg(feature = "store")]
            retention: perf_store::Retention::default(),
            #[cfg(feature = "store")]
            cleanup_every: CLEANUP_EVERY,
            #[cfg(feature = "learn")]
            learning: None,
            #[cfg(feature = "predict")]
            cost_models: None,
            #[cfg(feature = "transport")]
            shm: shm::ShmSettings::default(),
            #[cfg(feature = "monitor")]
            decision_log: None,
        }
    }

    /// The context a decision made now would see.
    pub fn context(&self) -> DecisionContext {
        DecisionContext {
            now: now(),
            system: self.probe.sample(),
            zero_copy: self.zero_copy,
        }
    }

    /// Decides how `request` travels, now, under the probe's latest sample.
    pub fn decide(&self, request: &TransferRequest) -> Decision {
        self.policy.decide(request, &self.context())
    }

    /// The policy transfers are decided by: the engine, whose decisions also go to the
    /// decision log with the `monitor` feature.
    pub fn policy(&self) -> Arc<dyn perf_core::TransferPolicy> {
        self.policy.clone()
    }

    /// The report of experiment `name` of the configuration in force at `now_unix_ms`, from
    /// the transfers its store has committed; `None` when the configuration has no such
    /// experiment.
    #[cfg(all(feature = "abtest", feature = "store"))]
    pub fn experiment_report(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<Option<crate::StoredReport>, crate::ReportFailure> {
        let config = self.controller.config();
        let Some(experiment) = config.experiments.iter().find(|e| e.name.as_str() == name) else {
            return Ok(None);
        };
        let backend = self.store.query.backend();
        crate::experiment_report_from(backend.as_ref(), experiment, now_unix_ms).map(Some)
    }

    /// The telemetry every record goes to: counters, histograms and gauges exported as
    /// Prometheus text and by OTLP.
    #[cfg(feature = "monitor")]
    pub fn telemetry(&self) -> &Arc<perf_monitor::Telemetry> {
        &self.monitor.telemetry
    }

    /// The log of decisions: sampled `tracing` events and the most recent ones.
    #[cfg(feature = "monitor")]
    pub fn decision_log(&self) -> &Arc<perf_monitor::DecisionLog> {
        &self.monitor.decisions
    }

    /// Counts of every record's outcome (transfers, failed, fallen back) since the start.
    #[cfg(feature = "monitor")]
    pub fn tally(&self) -> TallyCounts {
        self.monitor.tally.counts()
    }

    /// Sends one transfer record to every sink (the store, the cost models
    /// and the learning engine among them).
    pub fn record(&self, metrics: &TransferMetrics) {
        for sink in &self.sinks {
            sink.record(metrics);
        }
    }

    /// Validates `toml` and swaps it in whole; returns the new version.
    pub fn reload_config(&self, toml: &str) -> Result<u64, ConfigErrors> {
        self.controller.reload_toml(toml)
    }

    /// The decision engine.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// A policy to compare the engine against: a controller on the
    /// configuration in force, with the same decision functions, seed and
    /// metrics, but learning off in every pool (no classifier, no predictor,
    /// no exploration) and the configured thresholds, unmoved by history.
    pub fn fixed_thresholds_policy(&self) -> Result<Controller, OptimizerError> {
        let mut config = (*self.controller.config()).clone();
        config.defaults.learning = false;
        for pool in config.pools.values_mut() {
            pool.settings.learning = false;
        }
        Ok(self.parts.builder(config).build()?)
    }

    /// What went wrong at build without stopping it, each said once: a store
    /// kept in memory, saved cost models that do not load, history not
    /// replayed, a failed sweep or clean-up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the data directory's calibration profile ([`crate::CALIBRATION_FILE`], written
    /// by `perfopt calibrate` or [`crate::calibrate_data_dir`]) decides: it does wherever the
    /// configuration states no costs of its own (no `profile`, the built-in `[costs]`), for
    /// the first configuration and every reload.
    pub fn calibration(&self) -> &CalibrationStatus {
        &self.calibration
    }

    /// The learning engine, when [`OptimizerBuilder::learning`] turned it on:
    /// its status, events and classifier.
    #[cfg(feature = "learn")]
    pub fn learning(&self) -> Option<&Arc<perf_learn::BackgroundEngine>> {
        self.learning.as_ref()
    }

    /// Where transfer records go: the data directory's store, or memory (and why).
    #[cfg(feature = "store")]
    pub fn store_status(&self) -> &StoreStatus {
        &self.store.status
    }

    /// The metrics store's sink (over the data directory's store or memory).
    #[cfg(feature = "store")]
    pub fn store(&self) -> &Arc<perf_store::StoreSink> {
        &self.store.sink
    }

    /// Waits until everything recorded so far is committed to the store, so
    /// that [`Optimizer::metrics`] sees it; says whether the commit worked.
    #[cfg(feature = "store")]
    pub fn flush(&self) -> Result<(), perf_store::StoreError> {
        self.store.sink.try_flush()
    }

    /// Percentiles, series and samples of what was recorded (committed to the
    /// data directory's store, or to memory).
    #[cfg(feature = "store")]
    pub fn metrics(&self) -> Arc<dyn MetricsQuery> {
        self.store.query.clone()
    }

    /// The same queries as [`Optimizer::metrics`], plus totals for a range
    /// (`summary`), merged buckets and correlation profiles.
    #[cfg(feature = "store")]
    pub fn store_query(&self) -> &perf_store::StoreQuery {
        &self.store.query
    }

    /// What retention has done so far, when the store persists.
    #[cfg(feature = "store")]
    pub fn retention(&self) -> Option<RetentionReport> {
        self.cleaner.as_ref().map(store::Cleaner::report)
    }

    /// The learned cost models, when on (see [`OptimizerBuilder::cost_models`]).
    #[cfg(feature = "predict")]
    pub fn cost_models(&self) -> Option<&Arc<perf_predict::Learner>> {
        self.cost_models.as_ref().map(|m| m.feed.learner())
    }

    /// Where the cost models the optimizer started with came from, when on.
    #[cfg(feature = "predict")]
    pub fn cost_models_origin(&self) -> Option<&CostModelsOrigin> {
        self.cost_models.as_ref().map(|m| &m.origin)
    }

    /// The pool of shared-memory segments, to hand to executors.
    #[cfg(feature = "transport")]
    pub fn segment_pool(&self) -> &perf_transport::SegmentPool {
        &self.segment_pool
    }

    /// The shared-memory backend and what its start-up sweep removed.
    #[cfg(feature = "transport")]
    pub fn shm_status(&self) -> &ShmStatus {
        &self.shm_status
    }

    /// A host runtime deciding with this optimizer's engine and probe, carrying zero-copy
    /// through its segment pool, and recording every transfer (failed ones included) to its
    /// sinks: the store, the cost models and the learning engine. Add workers
    /// ([`HostBuilder::spawn`](perf_transport::HostBuilder::spawn),
    /// [`HostBuilder::connect`](perf_transport::HostBuilder::connect)) and start it.
    #[cfg(feature = "transport")]
    pub fn host(&self) -> perf_transport::HostBuilder {
        let mut host = perf_transport::Host::builder(self.policy())
            .probe(self.probe.clone())
            .zero_copy(self.segment_pool.clone());
        for sink in &self.sinks {
            host = host.sink(sink.clone());
        }
        host
    }

    /// Connects an executor to the worker at `endpoint`: it decides with this
    /// optimizer's engine and probe and records to its sinks. Zero-copy is
    /// used when `zero_copy` gives a pool (e.g. [`Optimizer::segment_pool`])
    /// and the host's secret, and the worker maps references on this host.
    #[cfg(feature = "transport")]
    pub async fn connect(
        &self,
        endpoint: &perf_transport::grpc::Endpoint,
        client: perf_transport::grpc::ClientConfig,
        zero_copy: Option<(perf_transport::SegmentPool, perf_transport::Secret)>,
    ) -> Result<perf_transport::Executor, perf_transport::ClientError> {
        let client = perf_transport::WorkerClient::connect(endpoint, client).await?;
        let mut executor = perf_transport::Executor::connect(
            self.policy(),
            client,
            zero_copy,
            self.probe.clone(),
            perf_transport::ExecutorConfig::default(),
        )
        .await?;
        for sink in &self.sinks {
            executor = executor.with_sink(sink.clone());
        }
        Ok(executor)
    }

    /// Flushes the store, finishes the learning engine and the cost models'
    /// feed (each after learning from what is queued), saves the cost models
    /// where they persist, stops retention, and reports each part.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    fn stop(&mut self) -> ShutdownReport {
        self.stopped = true;
        #[cfg(feature = "store")]
        let store = {
            let flushed = self.store.sink.try_flush();
            let stats = self.store.sink.stats();
            StoreReport {
                status: self.store.status.clone(),
                recorded: stats.recorded,
                committed: stats.committed,
                dropped: stats.dropped,
                failed_commits: stats.failed_commits,
                flush_error: flushed.err().map(|e| e.to_string()),
            }
        };
        #[cfg(feature = "learn")]
        let learning = self.learning.as_ref().map(|engine| {
            engine.finish();
            LearningReport {
                status: engine.status(),
                dropped: engine.dropped(),
            }
        });
        ShutdownReport {
            #[cfg(feature = "store")]
            store,
            #[cfg(feature = "learn")]
            learning,
            #[cfg(feature = "predict")]
            cost_models: self
                .cost_models
                .as_ref()
                .map(cost_models::CostModels::finish),
            #[cfg(feature = "store")]
            retention: self.cleaner.as_mut().map(store::Cleaner::stop),
        }
    }
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop();
        }
    }
}
