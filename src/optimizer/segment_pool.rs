//! A segment pool on its own, for hosts and measurements that carry by a fixed method and need
//! no optimizer: the same backend and start-up sweep as [`crate::Optimizer`]'s.

use perf_transport::{SegmentPool, SegmentPoolConfig};

use super::OptimizerError;
use super::shm::{ShmSettings, start};

/// A pool of shared-memory segments with `config`, on the backend an [`crate::Optimizer`]
/// makes by default (memfd segments on Linux, after stale named segments are swept).
pub fn segment_pool(config: SegmentPoolConfig) -> Result<SegmentPool, OptimizerError> {
    let settings = ShmSettings {
        pool: config,
        ..ShmSettings::default()
    };
    Ok(start(settings)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_has_the_settings_it_was_given() {
        let config = SegmentPoolConfig {
            max_class: 1 << 20,
            budget_bytes: 4 << 20,
            ..SegmentPoolConfig::default()
        };
        let pool = segment_pool(config).unwrap();
        assert!(pool.acquire(1 << 20).is_ok());
        assert!(pool.acquire(8 << 20).is_err(), "beyond the 4 MiB budget");
        let bad = SegmentPoolConfig {
            max_class: 3 << 20,
            ..SegmentPoolConfig::default()
        };
        assert!(matches!(segment_pool(bad), Err(OptimizerError::Pool(_))));
    }
}
