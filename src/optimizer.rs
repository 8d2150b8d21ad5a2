//! The builder that wires configuration, engine, sinks and probe into one optimizer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perf_core::config::MAX_CONFIG_BYTES;
use perf_core::{
    Config, ConfigErrors, Controller, ControllerBuilder, ControllerError, CostCoefficients,
    Decision, DecisionContext, DecisionFunction, MetricsQuery, MetricsSink, Name, Predictor,
    ResourceProbe, ThresholdStore, Timestamp, TransferMetrics, TransferRequest,
    ZeroCopyAvailability,
};
use perf_platform::{FileError, FileKind};

use crate::watch::{ConfigWatcher, ReloadCallback, ReloadEvent};

/// Why an optimizer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    /// The configuration file could not be opened or read.
    #[error("cannot read configuration {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The configuration file is larger than perfopt accepts.
    #[error(
        "configuration {path} is larger than {MAX_CONFIG_BYTES} bytes, expected at most {MAX_CONFIG_BYTES}"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The path names something other than a regular file (a FIFO, a device, a directory);
    /// nothing was read from it.
    #[error("configuration {path} is {kind}, expected a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// The configuration is invalid; nothing was applied.
    #[error("invalid configuration {path}:\n{errors}")]
    Config {
        /// The file, or `(inline)`.
        path: PathBuf,
        /// Every problem found.
        errors: ConfigErrors,
    },
    /// The engine could not be built.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The metrics store could not be opened.
    #[cfg(feature = "store")]
    #[error("metrics store {path}: {source}")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        source: perf_store::StoreError,
    },
}

/// Reads and validates a configuration file (at most [`MAX_CONFIG_BYTES`]);
/// nothing is applied.
pub fn load_config(path: &Path) -> Result<Config, OptimizerError> {
    read_config(path).map(|(_, config)| config)
}

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`] bytes of text.
pub(crate) fn read_bounded(path: &Path) -> Result<String, OptimizerError> {
    let path_buf = || path.to_path_buf();
    perf_platform::read_regular_to_string(path, MAX_CONFIG_BYTES as u64).map_err(|e| match e {
        FileError::Open { source, .. } | FileError::Read { source, .. } => OptimizerError::Io {
            path: path_buf(),
            source,
        },
        FileError::NotRegular { kind, .. } => OptimizerError::NotRegular {
            path: path_buf(),
            kind,
        },
        FileError::TooLarge { .. } => OptimizerError::TooLarge { path: path_buf() },
        FileError::NotText { source, .. } => OptimizerError::Io {
            path: path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, source),
        },
    })
}

/// Reads and validates a calibration profile written by `perfopt bench`.
pub fn load_profile(path: &Path) -> Result<CostCoefficients, OptimizerError> {
    let text = read_bounded(path)?;
    Config::parse_profile(&text).map_err(|errors| OptimizerError::Config {
        path: path.to_path_buf(),
        errors,
    })
}

/// Reads and validates a configuration file, and the calibration profile it
/// names (relative to the file's folder); returns the file's text too.
pub(crate) fn read_config(path: &Path) -> Result<(String, Config), OptimizerError> {
    let text = read_bounded(path)?;
    let config = parse_config(path, &text)?;
    Ok((text, config))
}

/// Validates `text`, read from `path`, and reads the calibration profile it names.
pub(crate) fn parse_config(path: &Path, text: &str) -> Result<Config, OptimizerError> {
    let mut config = Config::from_toml_str(text).map_err(|errors| OptimizerError::Config {
        path: path.to_path_buf(),
        errors,
    })?;
    if let Some(profile) = &config.profile {
        let dir = path.parent().unwrap_or(Path::new("."));
        config.costs = load_profile(&dir.join(profile))?;
    }
    Ok(config)
}

/// Assembles an [`Optimizer`].
pub struct OptimizerBuilder {
    controller: ControllerBuilder,
    config_file: Option<PathBuf>,
    watch: Option<Duration>,
    on_reload: Option<ReloadCallback>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    zero_copy: ZeroCopyAvailability,
    #[cfg(feature = "store")]
    data_dir: Option<PathBuf>,
    #[cfg(feature = "learn")]
    learning: Option<perf_learn::LearnConfig>,
    #[cfg(feature = "learn")]
    model_store: Option<Arc<dyn perf_core::ModelStore>>,
}

impl OptimizerBuilder {
    /// Runs `config` (the default configuration otherwise).
    pub fn config(mut self, config: Config) -> Self {
        self.controller = self.controller.config(config);
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

    /// Reads resources from `probe` (a fixed idle machine otherwise).
    pub fn probe(mut self, probe: Arc<dyn ResourceProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Uses `predictor` for learned estimates once it is confident.
    pub fn predictor(mut self, predictor: Arc<dyn Predictor>) -> Self {
        self.controller = self.controller.predictor(predictor);
        self
    }

    /// Gives decision functions access to recorded metrics.
    pub fn metrics_query(mut self, metrics: Arc<dyn MetricsQuery>) -> Self {
        self.controller = self.controller.metrics(metrics);
        self
    }

    /// Persists thresholds and their history in `store`.
    pub fn threshold_store(mut self, store: Arc<dyn ThresholdStore>) -> Self {
        self.controller = self.controller.threshold_store(store);
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
        self.controller = self.controller.function(name, priority, pools, f);
        self
    }

    /// Records every transfer into the metrics store in `dir` (redb), answers
    /// decision functions' queries from it, and keeps thresholds and their
    /// history there so they survive a restart.
    #[cfg(feature = "store")]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
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
    /// its store and the newest one that loads is used from the start.
    #[cfg(feature = "learn")]
    pub fn learning(mut self, config: perf_learn::LearnConfig) -> Self {
        self.learning = Some(config);
        self
    }

    /// Seeds exploration, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.controller = self.controller.seed(seed);
        self
    }

    /// Validates everything and starts the watcher, if asked for.
    #[cfg_attr(not(feature = "store"), allow(unused_mut))]
    pub fn build(mut self) -> Result<Optimizer, OptimizerError> {
        #[cfg(feature = "store")]
        let store = match self.data_dir.take() {
            Some(dir) => Some(self.open_store(dir)?),
            None => None,
        };
        let mut builder = self.controller;
        let mut initial_text = None;
        if let Some(path) = &self.config_file {
            let (text, config) = read_config(path)?;
            builder = builder.config(config);
            initial_text = Some(text);
        }
        #[cfg(feature = "learn")]
        let learning = self.learning.map(|config| {
            let mut engine = perf_learn::LearningEngine::new(config);
            if let Some(models) = self.model_store.take() {
                engine = engine.with_store(models, now());
            }
            engine
        });
        #[cfg(feature = "learn")]
        if let Some(engine) = &learning {
            builder = builder.classifier(Arc::new(engine.classifier()));
        }
        let controller = Arc::new(builder.build()?);
        #[cfg(feature = "learn")]
        let learning = learning.map(|engine| {
            let engine = engine.with_controller(controller.clone());
            Arc::new(perf_learn::BackgroundEngine::start(engine))
        });
        #[cfg(feature = "learn")]
        if let Some(engine) = &learning {
            self.sinks.push(engine.clone());
        }
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
            #[cfg(feature = "store")]
            store,
            #[cfg(feature = "learn")]
            learning,
            sinks: self.sinks,
            probe: self.probe,
            zero_copy: self.zero_copy,
            _watcher: watcher,
        })
    }
}

#[cfg(feature = "store")]
impl OptimizerBuilder {
    /// Opens the store and wires its sink, query and threshold log into the builder.
    fn open_store(&mut self, dir: PathBuf) -> Result<Arc<perf_store::StoreSink>, OptimizerError> {
        let err = |source| OptimizerError::Store {
            path: dir.clone(),
            source,
        };
        let backend = perf_store::RedbBackend::open(&dir).map_err(err)?;
        let thresholds: Arc<dyn ThresholdStore> = Arc::new(backend.thresholds());
        #[cfg(feature = "learn")]
        {
            self.model_store = Some(Arc::new(backend.models()));
        }
        let backend: Arc<dyn perf_store::Backend> = Arc::new(backend);
        let sink = Arc::new(
            perf_store::StoreSink::new(backend.clone(), perf_store::SinkConfig::default())
                .map_err(err)?,
        );
        let query: Arc<dyn MetricsQuery> = Arc::new(perf_store::StoreQuery::new(backend));
        let controller =
            std::mem::replace(&mut self.controller, Controller::builder(Config::default()));
        self.controller = controller.threshold_store(thresholds).metrics(query);
        self.sinks.push(sink.clone());
        Ok(sink)
    }
}

/// The optimizer: decides, records, reloads.
pub struct Optimizer {
    controller: Arc<Controller>,
    #[cfg(feature = "store")]
    store: Option<Arc<perf_store::StoreSink>>,
    #[cfg(feature = "learn")]
    learning: Option<Arc<perf_learn::BackgroundEngine>>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    zero_copy: ZeroCopyAvailability,
    _watcher: Option<ConfigWatcher>,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("controller", &self.controller)
            .field("sinks", &self.sinks.len())
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
            controller: Controller::builder(Config::default()),
            config_file: None,
            watch: None,
            on_reload: None,
            sinks: Vec::new(),
            probe: default_probe(),
            zero_copy: ZeroCopyAvailability::Pooled,
            #[cfg(feature = "store")]
            data_dir: None,
            #[cfg(feature = "learn")]
            learning: None,
            #[cfg(feature = "learn")]
            model_store: None,
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
        self.controller.decide(request, &self.context())
    }

    /// Sends one transfer record to every sink.
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

    /// The learning engine, when [`OptimizerBuilder::learning`] turned it on:
    /// its status, events and classifier.
    #[cfg(feature = "learn")]
    pub fn learning(&self) -> Option<&Arc<perf_learn::BackgroundEngine>> {
        self.learning.as_ref()
    }

    /// The metrics store's sink, when a data directory was given.
    #[cfg(feature = "store")]
    pub fn store(&self) -> Option<&Arc<perf_store::StoreSink>> {
        self.store.as_ref()
    }

    /// Connects an executor to the worker at `endpoint`: it decides with this
    /// optimizer's engine and probe and records to its sinks. Zero-copy is
    /// used when `zero_copy` gives a pool and the host's secret, and the
    /// worker maps references on this host.
    #[cfg(feature = "transport")]
    pub async fn connect(
        &self,
        endpoint: &perf_transport::grpc::Endpoint,
        client: perf_transport::grpc::ClientConfig,
        zero_copy: Option<(perf_transport::SegmentPool, perf_transport::Secret)>,
    ) -> Result<perf_transport::Executor, perf_transport::ClientError> {
        let client = perf_transport::WorkerClient::connect(endpoint, client).await?;
        let policy: Arc<dyn perf_core::TransferPolicy> = self.controller.clone();
        let mut executor = perf_transport::Executor::connect(
            policy,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_given_as_configuration_is_refused_as_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_config(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                OptimizerError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "configuration {} is a directory, expected a regular file",
                dir.path().display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_device_given_as_profile_is_refused_without_reading_it() {
        let err = load_profile(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration /dev/zero is a character device, expected a regular file"
        );
    }

    #[test]
    fn a_file_past_the_bound_is_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.toml");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES + 1]).unwrap();
        let err = load_config(&path).unwrap_err();
        assert!(matches!(err, OptimizerError::TooLarge { .. }), "{err:?}");
    }
}
