//! The host's shared memory: the backend (memfd, or named segments), made after sweeping the
//! named segments of dead processes, and the segment pool within a byte budget.

use std::sync::Arc;

use perf_core::PlatformShm;
use perf_transport::{SegmentPool, SegmentPoolConfig};
use serde::Serialize;

use super::OptimizerError;

/// What the start-up sweep of stale named segments did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SweepOutcome {
    /// The segment directory was swept.
    Swept {
        /// Segments with our prefix found.
        found: usize,
        /// Those whose owner was dead, now removed.
        removed: usize,
        /// Those left in place (owner alive or not judged, another user's).
        kept: usize,
    },
    /// The segment directory could not be read; named segments cannot be
    /// opened either, memfd segments still work.
    Failed {
        /// Why.
        error: String,
    },
    /// This platform has no named segments to sweep.
    NotApplicable,
}

/// The shared-memory backend the optimizer made, and its start-up sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShmStatus {
    /// The backend that creates segments (`memfd`, `named`, ...).
    pub backend: &'static str,
    /// The sweep of stale named segments before it was made.
    pub sweep: SweepOutcome,
}

/// Which segments the host creates, and where named ones live.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShmSettings {
    pub(crate) named: bool,
    #[cfg(target_os = "linux")]
    pub(crate) named_config: perf_platform::NamedShmConfig,
    pub(crate) pool: SegmentPoolConfig,
}

/// Sweeps, makes the backend and the pool.
pub(crate) fn start(settings: ShmSettings) -> Result<(SegmentPool, ShmStatus), OptimizerError> {
    let (shm, sweep) = backend(&settings)?;
    let status = ShmStatus {
        backend: shm.name(),
        sweep,
    };
    let pool = SegmentPool::new(shm, settings.pool).map_err(OptimizerError::Pool)?;
    Ok((pool, status))
}

#[cfg(target_os = "linux")]
fn backend(settings: &ShmSettings) -> Result<(Arc<dyn PlatformShm>, SweepOutcome), OptimizerError> {
    use perf_platform::{MemfdShm, NamedShm, SystemShm};

    let named = NamedShm::new(settings.named_config.clone());
    let named = match named {
        Ok(named) => named,
        Err(e) if settings.named => return Err(OptimizerError::Shm(e)),
        Err(e) => {
            let sweep = SweepOutcome::Failed {
                error: e.to_string(),
            };
            return Ok((Arc::new(MemfdShm::default()), sweep));
        }
    };
    let sweep = match named.sweep_stale() {
        Ok(r) => SweepOutcome::Swept {
            found: r.found,
            removed: r.removed,
            kept: r.kept,
        },
        Err(e) if settings.named => return Err(OptimizerError::Shm(e)),
        Err(e) => SweepOutcome::Failed {
            error: e.to_string(),
        },
    };
    let shm = SystemShm::new(MemfdShm::default(), named, settings.named);
    Ok((Arc::new(shm), sweep))
}

#[cfg(not(target_os = "linux"))]
fn backend(settings: &ShmSettings) -> Result<(Arc<dyn PlatformShm>, SweepOutcome), OptimizerError> {
    if settings.named {
        return Err(OptimizerError::Shm(perf_core::ShmError::Unsupported(
            "named (Linux only)",
        )));
    }
    Ok((perf_platform::default_shm(), SweepOutcome::NotApplicable))
}
