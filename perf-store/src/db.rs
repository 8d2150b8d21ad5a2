//! The redb backend: one file, `metrics.redb`, in the data directory, holding raw samples,
//! buckets, the threshold log, trained models and the store's meta data, each batch committed
//! durably and whole.

mod check;
mod codec;
mod file;
mod holder;
mod models;
mod reader;
mod storage;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use perf_core::{
    Name, SampleFilter, ThresholdChange, ThresholdError, ThresholdStore, TransferMetrics,
};
use redb::backends::FileBackend;
use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, Durability, ReadTransaction,
    ReadableDatabase, ReadableTable, TableDefinition, TableError,
};

pub use check::{AccessReport, CheckReport, TableRows, check, check_access};
pub use codec::SCHEMA_VERSION;
pub use file::{StoreFile, inspect};
pub use holder::{Holder, MAX_HOLDER_BYTES, holder_file};
pub use models::{MODEL_VERSIONS_KEPT, ModelInfo, RedbModelStore};
pub use reader::RedbReader;
pub use storage::WriteFaults;

pub(crate) use codec::{
    BUCKETS, META, META_CREATED_AT, META_NEXT_SAMPLE, META_SCHEMA_VERSION, MODELS, SAMPLES,
    THRESHOLDS, bucket_key_prefix, decode_bucket_key, decode_change, decode_model, decode_sample,
    encode_bucket_key, encode_model, encode_sample, redb_err,
};

use crate::datadir;
use crate::schema::{Backend, Batch, Bucket, BucketKey, Granularity, StoreError};

/// The name of the store's file inside the data directory.
pub const DB_FILE_NAME: &str = "metrics.redb";

/// The most raw samples one [`Backend::samples`] call returns, whatever limit it asks for.
pub const MAX_SAMPLE_LIMIT: usize = 1_000_000;

/// The most buckets one [`Backend::buckets`] call reads; a larger range is refused as invalid.
pub const MAX_BUCKETS_PER_READ: usize = 1_000_000;

/// The path of the store's file in `data_dir`.
pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE_NAME)
}

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbConfig {
    /// Verify the checksum of every page on open, so that a file damaged outside redb is
    /// refused with [`StoreError::Corrupt`] instead of trusted (this reads the whole file).
    pub verify_on_open: bool,
    /// The most memory redb may use to cache pages, in bytes.
    pub cache_bytes: usize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        RedbConfig {
            verify_on_open: true,
            cache_bytes: 64 << 20,
        }
    }
}

/// How processes share a store: one writer, and any number of read-only openers beside it
/// (`perfopt stats` while `perfopt run` records), each seeing the writer's commits.
pub(crate) const CONCURRENCY: ConcurrencyMode = ConcurrencyMode::SingleWriter;

/// A store open for writing, with the holder file that names this process while it is.
#[derive(Debug)]
pub(crate) struct OpenStore {
    // Declared first, so dropped first: the file goes before the lock is released, and never
    // names a process that no longer holds the store.
    _holder: Option<holder::HolderFile>,
    db: Database,
}

impl std::ops::Deref for OpenStore {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

/// The error for a store at `path` that another open holds: it names the holder when the
/// holder file does.
pub(crate) fn held(path: &Path) -> StoreError {
    StoreError::Held {
        path: path.to_path_buf(),
        holder: holder::read_holder(path),
    }
}

/// The metrics store in a redb file; see the `codec` module docs for the layout.
///
/// Cheap to clone: clones share the open database. While it is open, the holder file beside the
/// store ([`holder_file`]) names this process, so that another opener's [`StoreError::Held`]
/// says who holds it.
#[derive(Debug, Clone)]
pub struct RedbBackend {
    pub(crate) db: Arc<OpenStore>,
    path: PathBuf,
}

/// Runs `f`, turning a panic inside redb on a damaged file into [`StoreError::Corrupt`].
pub(crate) fn no_panic<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(StoreError::Corrupt(format!(
            "redb failed reading the file: {what}"
        )))
    })
}

/// Now, in nanoseconds since the epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Opens (or creates) the redb file at `path` for writing, without looking at the schema, and
/// writes its holder file; refuses a path that is not a regular file without opening it, and a
/// store another open holds with [`StoreError::Held`].
pub(crate) fn open_database(
    path: &Path,
    config: &RedbConfig,
    faults: Option<WriteFaults>,
) -> Result<OpenStore, StoreError> {
    let mut builder = Builder::new();
    builder
        .set_cache_size(config.cache_bytes)
        .set_check_integrity_on_open(config.verify_on_open)
        .set_concurrency_mode(CONCURRENCY);
    let file = file::open_store_file(path, file::Access::ReadWrite)?;
    let opened = no_panic(|| {
        let res = match faults {
            None => FileBackend::new(file).and_then(|b| builder.create_with_backend(b)),
            Some(faults) => {
                storage::FaultyFile::new(file, faults).and_then(|b| builder.create_with_backend(b))
            }
        };
        res.map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => held(path),
            e => redb_err(e),
        })
    })?;
    Ok(OpenStore {
        _holder: holder::HolderFile::write(path),
        db: opened,
    })
}

/// The schema version stored in meta, or `None` for a store without one.
pub(crate) fn stored_version(db: &impl ReadableDatabase) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read().map_err(redb_err)?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(redb_err(e)),
    };
    let Some(v) = meta.get(META_SCHEMA_VERSION).map_err(redb_err)? else {
        return Ok(None);
    };
    let v = v.value();
    u32::try_from(v)
        .map(Some)
        .map_err(|_| StoreError::Corrupt(format!("schema version {v}, expected a small number")))
}

/// Checks the stored schema version against this build's.
pub(crate) fn expect_current(found: u32) -> Result<(), StoreError> {
    match found {
        v if v == SCHEMA_VERSION => Ok(()),
        v if v < SCHEMA_VERSION => Err(StoreError::NeedsMigration {
            found: v,
            expected: SCHEMA_VERSION,
        }),
        v => Err(StoreError::TooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
    }
}

/// Writes the meta data and creates the tables of a new, empty store.
fn initialize(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(redb_err)?;
    let existing: Vec<String> = txn
        .list_tables()
        .map_err(redb_err)?
        .map(|h| redb::TableHandle::name(&h).to_string())
        .collect();
    if !existing.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "store holds tables {existing:?} but no schema version, expected a perfopt metrics store"
        )));
    }
    {
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        meta.insert(META_SCHEMA_VERSION, u64::from(SCHEMA_VERSION))
            .map_err(redb_err)?;
        meta.insert(META_CREATED_AT, now_ns()).map_err(redb_err)?;
        meta.insert(META_NEXT_SAMPLE, 0).map_err(redb_err)?;
        txn.open_table(SAMPLES).map_err(redb_err)?;
        txn.open_table(BUCKETS).map_err(redb_err)?;
        txn.open_table(THRESHOLDS).map_err(redb_err)?;
        txn.open_table(MODELS).map_err(redb_err)?;
    }
    txn.commit().map_err(redb_err)
}

/// Opens a table of a read transaction; a missing table means a damaged store.
pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(def).map_err(|e| match e {
        TableError::TableDoesNotExist(name) => {
            StoreError::Corrupt(format!("table {name:?} is missing"))
        }
        e => redb_err(e),
    })
}

/// Counts the rows of a table that a store may lack (an older store of the same schema version);
/// a missing table counts as empty.
fn optional_rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    use redb::ReadableTableMetadata;
    match txn.open_table(def) {
        Ok(t) => t.len().map_err(redb_err),
        Err(TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(redb_err(e)),
    }
}

/// Every pool the store holds a transfer of, in alphabetical order: the pools of its hour buckets, which are
/// kept longest (see [`crate::Retention`]).
pub(crate) fn read_pools(txn: &ReadTransaction) -> Result<Vec<Name>, StoreError> {
    let table = read_table(txn, BUCKETS)?;
    let lo = bucket_key_prefix(Granularity::Hour, 0);
    let mut pools = BTreeSet::new();
    // Hour buckets sort last, so they run from `lo` to the end of the table.
    for row in table.range(lo.as_slice()..).map_err(redb_err)? {
        let (k, _) = row.map_err(redb_err)?;
        pools.insert(decode_bucket_key(k.value())?.series.pool);
    }
    let mut pools: Vec<Name> = pools.into_iter().collect();
    pools.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(pools)
}

/// Whether `m` passes `filter` (its time is checked by the range scan).
fn passes(filter: &SampleFilter, m: &TransferMetrics) -> bool {
    filter.pool.is_none_or(|p| p == m.pool)
        && filter.method.is_none_or(|x| x == m.method)
        && filter
            .sizes
            .is_none_or(|(lo, hi)| (lo..=hi).contains(&m.size))
        && filter
            .experiment
            .is_none_or(|e| m.experiment.is_some_and(|arm| arm.experiment == e))
}

impl RedbBackend {
    /// Opens the store in `data_dir`, creating the directory (0700) and the store if missing.
    ///
    /// Fails with [`StoreError::NeedsMigration`] for an older schema, [`StoreError::TooNew`] for
    /// a newer one, and [`StoreError::Corrupt`] for a damaged file; it never panics.
    pub fn open(data_dir: &Path) -> Result<RedbBackend, StoreError> {
        RedbBackend::open_with(data_dir, &RedbConfig::default())
    }

    /// Like [`RedbBackend::open`], with explicit settings.
    pub fn open_with(data_dir: &Path, config: &RedbConfig) -> Result<RedbBackend, StoreError> {
        RedbBackend::open_inner(data_dir, config, None)
    }

    /// Like [`RedbBackend::open_with`], on storage whose writes fail as `faults` says: for tests
    /// of full disks and commits torn by an I/O error.
    pub fn open_with_faults(
        data_dir: &Path,
        config: &RedbConfig,
        faults: WriteFaults,
    ) -> Result<RedbBackend, StoreError> {
        RedbBackend::open_inner(data_dir, config, Some(faults))
    }

    fn open_inner(
        data_dir: &Path,
        config: &RedbConfig,
        faults: Option<WriteFaults>,
    ) -> Result<RedbBackend, StoreError> {
        datadir::create_private_dir(data_dir)?;
        let path = store_file(data_dir);
        let db = open_database(&path, config, faults)?;
        no_panic(|| match stored_version(&*db)? {
            Some(v) => expect_current(v),
            None => initialize(&db),
        })?;
        Ok(RedbBackend {
            db: Arc::new(db),
            path,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The threshold log in the same file, for `ThresholdManager::restore` (R1.6).
    pub fn thresholds(&self) -> RedbThresholdStore {
        RedbThresholdStore {
            db: self.db.clone(),
        }
    }

    /// The trained models in the same file (see [`MODEL_VERSIONS_KEPT`]).
    pub fn models(&self) -> RedbModelStore {
        RedbModelStore {
            db: self.db.clone(),
        }
    }

    /// How many rows each table holds.
    pub fn rows(&self) -> Result<TableRows, StoreError> {
        count_rows(&self.db.begin_read().map_err(redb_err)?)
    }
}

/// How many rows each table of `txn` holds.
pub(crate) fn count_rows(txn: &ReadTransaction) -> Result<TableRows, StoreError> {
    use redb::ReadableTableMetadata;
    Ok(TableRows {
        samples: read_table(txn, SAMPLES)?.len().map_err(redb_err)?,
        buckets: read_table(txn, BUCKETS)?.len().map_err(redb_err)?,
        thresholds: read_table(txn, THRESHOLDS)?.len().map_err(redb_err)?,
        models: optional_rows(txn, MODELS)?,
    })
}

/// The buckets of `granularity` in `from_secs..to_secs`, as [`Backend::buckets`] returns them.
pub(crate) fn read_buckets(
    txn: &ReadTransaction,
    granularity: Granularity,
    from_secs: u64,
    to_secs: u64,
) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
    if from_secs >= to_secs {
        return Ok(Vec::new());
    }
    let lo = bucket_key_prefix(granularity, from_secs);
    let hi = bucket_key_prefix(granularity, to_secs);
    let table = read_table(txn, BUCKETS)?;
    let mut out = Vec::new();
    for row in table
        .range(lo.as_slice()..hi.as_slice())
        .map_err(redb_err)?
    {
        if out.len() == MAX_BUCKETS_PER_READ {
            return Err(StoreError::Invalid(format!(
                "range {from_secs}..{to_secs} holds more than {MAX_BUCKETS_PER_READ} buckets \
                 of {granularity:?}, expected fewer; use a coarser granularity or a shorter range"
            )));
        }
        let (k, v) = row.map_err(redb_err)?;
        let key = decode_bucket_key(k.value())?;
        let bucket = Bucket::from_bytes(v.value())
            .map_err(|e| StoreError::Corrupt(format!("bucket {key:?}: {e}")))?;
        out.push((key, bucket));
    }
    Ok(out)
}

/// Which stored samples a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Records {
    /// Every record, as [`Backend::samples`] returns them.
    All,
    /// Delivered transfers only, as [`Backend::evidence`] returns them.
    Evidence,
}

/// The newest `limit` samples passing `filter` of the `records` asked for.
pub(crate) fn read_samples(
    txn: &ReadTransaction,
    filter: &SampleFilter,
    limit: usize,
    records: Records,
) -> Result<Vec<TransferMetrics>, StoreError> {
    let limit = limit.min(MAX_SAMPLE_LIMIT);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let table = read_table(txn, SAMPLES)?;
    let rows = table
        .range((filter.since.as_nanos(), 0)..)
        .map_err(redb_err)?;
    for row in rows.rev() {
        let (_, v) = row.map_err(redb_err)?;
        let m = decode_sample(v.value())?;
        if passes(filter, &m) && (records == Records::All || m.is_evidence()) {
            out.push(m);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

impl Backend for RedbBackend {
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.samples.is_empty() && batch.buckets.is_empty() {
            return Ok(());
        }
        let encoded: Vec<Vec<u8>> = batch
            .samples
            .iter()
            .map(encode_sample)
            .collect::<Result<_, _>>()?;
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            let mut seq = meta
                .get(META_NEXT_SAMPLE)
                .map_err(redb_err)?
                .map_or(0, |g| g.value());
            let mut samples = txn.open_table(SAMPLES).map_err(redb_err)?;
            for (m, bytes) in batch.samples.iter().zip(&encoded) {
                samples
                    .insert((m.started_at.as_nanos(), seq), bytes.as_slice())
                    .map_err(redb_err)?;
                seq += 1;
            }
            meta.insert(META_NEXT_SAMPLE, seq).map_err(redb_err)?;
            let mut buckets = txn.open_table(BUCKETS).map_err(redb_err)?;
            for (key, bucket) in &batch.buckets {
                buckets
                    .insert(
                        encode_bucket_key(key).as_slice(),
                        bucket.to_bytes().as_slice(),
                    )
                    .map_err(redb_err)?;
            }
        }
        // Dropping the transaction on any error above aborts it: nothing of the batch remains.
        txn.commit().map_err(redb_err)
    }

    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
        if from_secs >= to_secs {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(redb_err)?;
        read_buckets(&txn, granularity, from_secs, to_secs)
    }

    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(redb_err)?;
        read_samples(&txn, filter, limit, Records::All)
    }

    fn evidence(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(redb_err)?;
        read_samples(&txn, filter, limit, Records::Evidence)
    }
}

/// The threshold log of a [`RedbBackend`]: every change, in append order, committed durably.
#[derive(Debug, Clone)]
pub struct RedbThresholdStore {
    db: Arc<OpenStore>,
}

fn threshold_err(e: StoreError) -> ThresholdError {
    ThresholdError::Store(e.to_string())
}

impl ThresholdStore for RedbThresholdStore {
    fn load(&self) -> Result<Vec<ThresholdChange>, ThresholdError> {
        let read = || -> Result<Vec<ThresholdChange>, StoreError> {
            let txn = self.db.begin_read().map_err(redb_err)?;
            let table = read_table(&txn, THRESHOLDS)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(redb_err)? {
                let (_, v) = row.map_err(redb_err)?;
                out.push(decode_change(v.value())?);
            }
            Ok(out)
        };
        read().map_err(threshold_err)
    }

    fn append(&self, change: &ThresholdChange) -> Result<(), ThresholdError> {
        let write = || -> Result<(), StoreError> {
            let bytes = codec::encode_change(change)?;
            let mut txn = self.db.begin_write().map_err(redb_err)?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| StoreError::Io(e.to_string()))?;
            {
                let mut table = txn.open_table(THRESHOLDS).map_err(redb_err)?;
                let next = table
                    .last()
                    .map_err(redb_err)?
                    .map_or(0, |(k, _)| k.value() + 1);
                table.insert(next, bytes.as_slice()).map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        };
        write().map_err(threshold_err)
    }
}
