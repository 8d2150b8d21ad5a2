//! The `ModelStore` seam: trained models kept as versioned, opaque blobs, with a store that
//! keeps nothing and one in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::request::Timestamp;

/// One saved version of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// 1 for the first version saved under a name, then counting up.
    pub version: u64,
    /// When it was saved.
    pub saved_at: Timestamp,
    /// The model's own encoding; the store does not look inside.
    pub bytes: Vec<u8>,
}

/// Why a model could not be saved or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelStoreError {
    /// The model name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid model name {0:?}: 1 to 64 letters, digits, '_', '-' or '.'")]
    InvalidName(String),
    /// The encoded model is larger than the store accepts.
    #[error("model {name:?} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The model's name.
        name: String,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The store failed underneath.
    #[error("model store: {0}")]
    Backend(String),
}

/// The largest model a store accepts, in bytes.
pub const MAX_MODEL_BYTES: usize = 16 << 20;

/// Checks a model name and size as every [`ModelStore`] must.
pub fn check_model(name: &str, len: usize) -> Result<(), ModelStoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(ModelStoreError::InvalidName(name.to_string()));
    }
    if len > MAX_MODEL_BYTES {
        return Err(ModelStoreError::TooLarge {
            name: name.to_string(),
            len,
            max: MAX_MODEL_BYTES,
        });
    }
    Ok(())
}

/// Keeps trained models as versioned, opaque blobs.
pub trait ModelStore: Send + Sync {
    /// Saves `bytes` as the next version of `name` and returns that version.
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<u64, ModelStoreError>;
    /// The newest version of `name`, if any was saved.
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError>;
}

/// A store that keeps nothing: every load finds no model.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopModelStore;

impl ModelStore for NoopModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], _at: Timestamp) -> Result<u64, ModelStoreError> {
        check_model(name, bytes.len())?;
        Ok(0)
    }
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        Ok(None)
    }
}

/// A store in memory, shared by clones (for tests and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemoryModelStore(Arc<Mutex<BTreeMap<String, StoredModel>>>);

impl ModelStore for MemoryModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<u64, ModelStoreError> {
        check_model(name, bytes.len())?;
        let mut models = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let version = models.get(name).map_or(1, |m| m.version + 1);
        let model = StoredModel {
            version,
            saved_at: at,
            bytes: bytes.to_vec(),
        };
        models.insert(name.to_string(), model);
        Ok(version)
    }
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        let models = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(models.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_are_checked() {
        assert!(check_model("classifier.v1", 10).is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(matches!(
                check_model(bad, 1),
                Err(ModelStoreError::InvalidName(_))
            ));
        }
        assert!(matches!(
            check_model("m", MAX_MODEL_BYTES + 1),
            Err(ModelStoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn memory_store_counts_versions_and_keeps_the_newest() {
        let store = MemoryModelStore::default();
        assert_eq!(store.load_model("m").unwrap(), None);
        assert_eq!(store.save_model("m", b"one", Timestamp(1)).unwrap(), 1);
        assert_eq!(store.save_model("m", b"two", Timestamp(2)).unwrap(), 2);
        let m = store.load_model("m").unwrap().unwrap();
        assert_eq!((m.version, m.bytes.as_slice()), (2, &b"two"[..]));
        assert!(store.save_model("bad name", b"", Timestamp(3)).is_err());
    }
}
