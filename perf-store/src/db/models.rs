//! Trained models in the redb store: each save is a new version, committed durably and whole,
//! and only the newest [`MODEL_VERSIONS_KEPT`] versions of a name are kept.

use std::sync::Arc;

use perf_core::{ModelStore, ModelStoreError, StoredModel, Timestamp, check_model};
use redb::{Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableError};

use super::{MODELS, decode_model, encode_model, no_panic, redb_err};
use crate::schema::StoreError;

/// How many versions of each model the store keeps; a save deletes the older ones.
pub const MODEL_VERSIONS_KEPT: u64 = 5;

/// One kept version of a model, as [`RedbModelStore::list_models`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// Its version: 1 for the first saved under the name, then counting up.
    pub version: u64,
    /// When it was saved.
    pub saved_at: Timestamp,
    /// Its size in bytes.
    pub len: usize,
}

/// The trained models of a [`RedbBackend`](crate::RedbBackend), in the same file.
///
/// Cheap to clone: clones share the open database. Saves from several threads or clones are
/// serialised by redb's single writer, so each gets its own consecutive version.
#[derive(Debug, Clone)]
pub struct RedbModelStore {
    pub(super) db: Arc<super::OpenStore>,
}

/// A failure of the store underneath, as the model seam reports it.
fn backend(e: StoreError) -> ModelStoreError {
    ModelStoreError::Backend(e.to_string())
}

fn redb_backend(e: impl Into<redb::Error>) -> ModelStoreError {
    backend(redb_err(e))
}

/// The error for a stored record that does not read back.
pub(super) fn corrupt(name: &str, version: u64, what: &str) -> String {
    format!("model {name} v{version} is corrupt: {what}")
}

/// Runs `f`, turning a panic inside redb on a damaged file into a backend error.
pub(super) fn guarded<T>(
    f: impl FnOnce() -> Result<T, ModelStoreError>,
) -> Result<T, ModelStoreError> {
    no_panic(|| Ok(f())).map_err(backend)?
}

impl RedbModelStore {
    /// Every kept version of every model, by name and then version, oldest first.
    ///
    /// Fails with [`ModelStoreError::Backend`] naming the first stored version that is damaged.
    pub fn list_models(&self) -> Result<Vec<ModelInfo>, ModelStoreError> {
        guarded(|| list_in(&self.db.begin_read().map_err(redb_backend)?))
    }
}

/// Every kept version of every model in `txn`, as [`RedbModelStore::list_models`] lists them.
pub(super) fn list_in(txn: &ReadTransaction) -> Result<Vec<ModelInfo>, ModelStoreError> {
    let table = match txn.open_table(MODELS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_backend(e)),
    };
    let mut out = Vec::new();
    for row in table.iter().map_err(redb_backend)? {
        let (k, v) = row.map_err(redb_backend)?;
        let (name, version) = k.value();
        let (saved_at, bytes) = decode_model(v.value())
            .map_err(|e| ModelStoreError::Backend(corrupt(name, version, &e)))?;
        out.push(ModelInfo {
            name: name.to_string(),
            version,
            saved_at,
            len: bytes.len(),
        });
    }
    Ok(out)
}

/// The newest version of `name` in `txn`, as [`ModelStore::load_model`] returns it.
pub(super) fn load_in(
    txn: &ReadTransaction,
    name: &str,
) -> Result<Option<StoredModel>, ModelStoreError> {
    let table = match txn.open_table(MODELS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(redb_backend(e)),
    };
    let Some(row) = table
        .range((name, 0)..=(name, u64::MAX))
        .map_err(redb_backend)?
        .next_back()
    else {
        return Ok(None);
    };
    let (k, v) = row.map_err(redb_backend)?;
    let version = k.value().1;
    let (saved_at, bytes) = decode_model(v.value())
        .map_err(|e| ModelStoreError::Backend(corrupt(name, version, &e)))?;
    Ok(Some(StoredModel {
        version,
        saved_at,
        bytes: bytes.to_vec(),
    }))
}

impl ModelStore for RedbModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<u64, ModelStoreError> {
        check_model(name, bytes.len())?;
        let value = encode_model(at, bytes);
        guarded(|| {
            let mut txn = self.db.begin_write().map_err(redb_backend)?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| backend(StoreError::Io(e.to_string())))?;
            let version = {
                let mut table = txn.open_table(MODELS).map_err(redb_backend)?;
                let newest = table
                    .range((name, 0)..=(name, u64::MAX))
                    .map_err(redb_backend)?
                    .next_back()
                    .transpose()
                    .map_err(redb_backend)?
                    .map_or(0, |(k, _)| k.value().1);
                let version = newest.checked_add(1).ok_or_else(|| {
                    ModelStoreError::Backend(format!(
                        "model {name} is at version {newest}, expected room for one more"
                    ))
                })?;
                table
                    .insert((name, version), value.as_slice())
                    .map_err(redb_backend)?;
                if let Some(oldest_kept) = version.checked_sub(MODEL_VERSIONS_KEPT - 1) {
                    let old: Vec<u64> = table
                        .range((name, 0)..(name, oldest_kept))
                        .map_err(redb_backend)?
                        .map(|row| row.map(|(k, _)| k.value().1))
                        .collect::<Result<_, _>>()
                        .map_err(redb_backend)?;
                    for v in old {
                        table.remove((name, v)).map_err(redb_backend)?;
                    }
                }
                version
            };
            // Dropping the transaction on any error above aborts it: nothing of the save remains.
            txn.commit().map_err(redb_backend)?;
            Ok(version)
        })
    }

    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        guarded(|| load_in(&self.db.begin_read().map_err(redb_backend)?, name))
    }
}
