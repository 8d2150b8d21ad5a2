//! The `ThresholdStore` seam: where threshold changes persist so that they survive a restart
//! (R1.6), with a store that keeps nothing and one in memory.

use std::sync::{Arc, Mutex};

use crate::threshold::{ThresholdChange, ThresholdError, lock};

/// Where threshold changes are persisted so that they survive a restart (R1.6).
pub trait ThresholdStore: Send + Sync {
    /// Every stored change, oldest first.
    fn load(&self) -> Result<Vec<ThresholdChange>, ThresholdError>;
    /// Appends one change; called before the change takes effect.
    fn append(&self, change: &ThresholdChange) -> Result<(), ThresholdError>;
}

/// A store that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopThresholdStore;

impl ThresholdStore for NoopThresholdStore {
    fn load(&self) -> Result<Vec<ThresholdChange>, ThresholdError> {
        Ok(Vec::new())
    }
    fn append(&self, _change: &ThresholdChange) -> Result<(), ThresholdError> {
        Ok(())
    }
}

/// A store in memory, shared by clones (for tests and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemoryThresholdStore(Arc<Mutex<Vec<ThresholdChange>>>);

impl ThresholdStore for MemoryThresholdStore {
    fn load(&self) -> Result<Vec<ThresholdChange>, ThresholdError> {
        Ok(lock(&self.0).clone())
    }
    fn append(&self, change: &ThresholdChange) -> Result<(), ThresholdError> {
        lock(&self.0).push(change.clone());
        Ok(())
    }
}
