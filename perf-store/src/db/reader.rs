//! The store opened for reading only, for the commands that only read it (`perfopt stats`,
//! `export`, `predict`, `model status`): it never creates, writes or locks out a writer's
//! repair, so it works on a read-only filesystem and on an immutable file, and beside the one
//! process that holds the store open for writing (a running `perfopt run`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perf_core::{ModelStoreError, Name, SampleFilter, StoredModel, TransferMetrics, check_model};
use redb::backends::FileBackend;
use redb::{Builder, Database, DatabaseError, ReadOnlyDatabase, ReadTransaction};

use super::file::{Access, open_store_file};
use super::models::{guarded, list_in, load_in};
use super::storage::ReadOnlyOverlay;
use super::{
    CONCURRENCY, ModelInfo, Records, TableRows, count_rows, expect_current, held, no_panic,
    read_buckets, read_pools, read_samples, redb_err, store_file, stored_version,
};
use crate::schema::{Backend, Batch, Bucket, BucketKey, Granularity, StoreError};

/// The page cache of a reader, in bytes.
const READER_CACHE_BYTES: usize = 64 << 20;

/// The open database underneath a [`RedbReader`].
enum ReadDb {
    /// redb's read-only open: nothing is written, and a running writer is seen by its lock.
    Clean(ReadOnlyDatabase),
    /// A store that its last writer did not close (a killed `perfopt run`): redb repairs such a
    /// file on open, so the repair runs on an in-memory overlay of it and the file stays as
    /// it is.
    Recovered(Database),
}

impl ReadDb {
    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        match self {
            ReadDb::Clean(db) => db.begin_read(),
            ReadDb::Recovered(db) => db.begin_read(),
        }
        .map_err(redb_err)
    }
}

/// The metrics store in a redb file, opened for reading only.
///
/// Cheap to clone: clones share the open database.
#[derive(Clone)]
pub struct RedbReader {
    db: Arc<ReadDb>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbReader {
    /// Opens the store in `data_dir` for reading; creates nothing and writes nothing.
    ///
    /// Fails with [`StoreError::Missing`] when there is no store, [`StoreError::NotAFile`]
    /// when its path is not a regular file (without opening it), and like
    /// [`RedbBackend::open`](crate::RedbBackend::open) for a store of another schema version or
    /// a damaged one; it never panics.
    pub fn open(data_dir: &Path) -> Result<RedbReader, StoreError> {
        let path = store_file(data_dir);
        let db = no_panic(|| {
            let file = open_store_file(&path, Access::Read)?;
            let mut builder = Builder::new();
            builder
                .set_cache_size(READER_CACHE_BYTES)
                .set_concurrency_mode(CONCURRENCY);
            let backend = FileBackend::new(file).map_err(redb_err)?;
            match builder.open_read_only_with_backend(backend) {
                Ok(db) => Ok(ReadDb::Clean(db)),
                Err(DatabaseError::RepairAborted) => {
                    // No writer holds the file (a live one would have kept it consistent): the
                    // overlay, which takes no file locks, is the only process's view of it.
                    let file = open_store_file(&path, Access::Read)?;
                    let overlay = ReadOnlyOverlay::new(file).map_err(|e| {
                        StoreError::Io(format!("cannot read {}: {e}", path.display()))
                    })?;
                    let db = Builder::new()
                        .set_cache_size(READER_CACHE_BYTES)
                        .create_with_backend(overlay)
                        .map_err(redb_err)?;
                    Ok(ReadDb::Recovered(db))
                }
                // A writer that shares no file with readers (a perfopt before they could).
                Err(DatabaseError::DatabaseAlreadyOpen) => Err(held(&path)),
                Err(e) => Err(redb_err(e)),
            }
        })?;
        no_panic(|| {
            let version = match &db {
                ReadDb::Clean(db) => stored_version(db)?,
                ReadDb::Recovered(db) => stored_version(db)?,
            };
            match version {
                Some(v) => expect_current(v),
                None => Err(StoreError::Corrupt(
                    "no schema version in meta, expected a perfopt metrics store".into(),
                )),
            }
        })?;
        Ok(RedbReader {
            db: Arc::new(db),
            path,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many rows each table holds.
    pub fn rows(&self) -> Result<TableRows, StoreError> {
        no_panic(|| count_rows(&self.db.begin_read()?))
    }

    /// Every pool the store holds a transfer of, in alphabetical order (as far back as hour buckets are kept).
    pub fn pools(&self) -> Result<Vec<Name>, StoreError> {
        no_panic(|| read_pools(&self.db.begin_read()?))
    }

    /// Every kept version of every model, as
    /// [`RedbModelStore::list_models`](crate::RedbModelStore::list_models) lists them.
    pub fn list_models(&self) -> Result<Vec<ModelInfo>, ModelStoreError> {
        guarded(|| {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| ModelStoreError::Backend(e.to_string()))?;
            list_in(&txn)
        })
    }

    /// The newest version of the model `name`, if one was saved.
    pub fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        guarded(|| {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| ModelStoreError::Backend(e.to_string()))?;
            load_in(&txn, name)
        })
    }
}

impl Backend for RedbReader {
    fn commit(&self, _batch: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Invalid(format!(
            "metrics store {} is open for reading only, expected it opened for writing to commit",
            self.path.display()
        )))
    }

    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
        no_panic(|| read_buckets(&self.db.begin_read()?, granularity, from_secs, to_secs))
    }

    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        no_panic(|| read_samples(&self.db.begin_read()?, filter, limit, Records::All))
    }

    fn evidence(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        no_panic(|| read_samples(&self.db.begin_read()?, filter, limit, Records::Evidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbBackend;
    use crate::test_support::metrics;

    fn batch(n: u64) -> Batch {
        Batch {
            samples: (0..n).map(|i| metrics(100 + i, 10.0 + i as f64)).collect(),
            buckets: Vec::new(),
        }
    }

    #[test]
    fn a_reader_sees_what_a_writer_committed_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        RedbBackend::open(dir.path())
            .unwrap()
            .commit(&batch(3))
            .unwrap();
        let before = std::fs::read(store_file(dir.path())).unwrap();
        let reader = RedbReader::open(dir.path()).unwrap();
        assert_eq!(reader.rows().unwrap().samples, 3);
        assert_eq!(
            reader.samples(&SampleFilter::default(), 10).unwrap().len(),
            3
        );
        assert_eq!(reader.list_models().unwrap(), Vec::new());
        assert_eq!(
            reader.pools().unwrap(),
            Vec::<Name>::new(),
            "no buckets yet"
        );
        let err = reader.commit(&batch(1)).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        drop(reader);
        assert_eq!(
            std::fs::read(store_file(dir.path())).unwrap(),
            before,
            "reading leaves the file as it was"
        );
    }

    #[test]
    fn the_pools_are_those_of_the_hour_buckets() {
        use crate::SeriesKey;
        use perf_core::{DataType, Method};
        let key = |granularity, pool: &str| BucketKey {
            granularity,
            start_secs: 3600,
            series: SeriesKey {
                pool: Name::new(pool).unwrap(),
                method: Method::Grpc,
                size_class: 12,
                data_type: DataType::Bytes,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let buckets = vec![
            (key(Granularity::Second, "seconds-only"), Bucket::default()),
            (key(Granularity::Hour, "ml"), Bucket::default()),
            (key(Granularity::Minute, "ml"), Bucket::default()),
            (key(Granularity::Hour, "etl"), Bucket::default()),
        ];
        RedbBackend::open(dir.path())
            .unwrap()
            .commit(&Batch {
                samples: Vec::new(),
                buckets,
            })
            .unwrap();
        let pools = RedbReader::open(dir.path()).unwrap().pools().unwrap();
        assert_eq!(
            pools,
            vec![Name::new("etl").unwrap(), Name::new("ml").unwrap()]
        );
    }

    #[test]
    fn a_missing_store_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nowhere");
        assert_eq!(
            RedbReader::open(&data).unwrap_err(),
            StoreError::Missing {
                path: store_file(&data)
            }
        );
        assert!(!data.exists(), "a reader creates nothing");
    }

    #[test]
    fn a_store_its_writer_did_not_close_is_read_after_an_in_memory_repair() {
        let dir = tempfile::tempdir().unwrap();
        let writer = RedbBackend::open(dir.path()).unwrap();
        writer.commit(&batch(4)).unwrap();
        // A copy taken while the writer holds the store open is what a killed writer leaves.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(store_file(dir.path()), store_file(&copy)).unwrap();
        drop(writer);
        let before = std::fs::read(store_file(&copy)).unwrap();
        let reader = RedbReader::open(&copy).unwrap();
        assert!(
            matches!(reader.db.as_ref(), ReadDb::Recovered(_)),
            "the copy needs a repair"
        );
        assert_eq!(reader.rows().unwrap().samples, 4);
        drop(reader);
        assert_eq!(std::fs::read(store_file(&copy)).unwrap(), before);
    }
}
