//! Why an optimizer could not be built.

use std::path::PathBuf;

use perf_core::config::MAX_CONFIG_BYTES;
use perf_core::{ConfigErrors, ControllerError};
use perf_platform::FileKind;

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
    /// A builder setting is out of range.
    #[error("invalid {setting}: expected {expected}, got {got}")]
    Setting {
        /// The builder method.
        setting: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// The telemetry or the decision log could not be set up (a decision log setting out of
    /// range).
    #[cfg(feature = "monitor")]
    #[error("monitoring: {0}")]
    Monitor(#[from] perf_monitor::TelemetryError),
    /// The metrics store of the data directory could not be opened and
    /// [`crate::OptimizerBuilder::require_store`] forbids keeping metrics in
    /// memory instead.
    #[cfg(feature = "store")]
    #[error("metrics store {path}: {source}")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        source: perf_store::StoreError,
    },
    /// The in-memory metrics store could not be started.
    #[cfg(feature = "store")]
    #[error("in-memory metrics store: {0}")]
    MemoryStore(perf_store::StoreError),
    /// The learned cost models could not be set up.
    #[cfg(feature = "predict")]
    #[error("cost models: {0}")]
    CostModels(perf_predict::PredictError),
    /// The shared-memory backend asked for could not be set up.
    #[cfg(feature = "transport")]
    #[error("shared memory: {0}")]
    Shm(perf_core::ShmError),
    /// The segment pool's settings are invalid.
    #[cfg(feature = "transport")]
    #[error("segment pool: {0}")]
    Pool(perf_transport::PoolError),
}
