//! Schema migration: upgrades an older store in place, one version per step and one transaction
//! per step, after copying the file to a timestamped backup beside it.
//!
//! History of the schema:
//! - version 1 keyed raw samples (table `samples`) by their start time in nanoseconds alone, so
//!   a sample that started in the same nanosecond as another replaced it;
//! - version 2 keys them (table `raw_samples`) by `(start ns, sequence)`, with the next sequence
//!   in meta, so every sample is kept. Buckets, thresholds and meta are unchanged.
//!
//! Version 2 later gained the `models` table without a new version: a save creates it, and a
//! store without it holds no models, so no step is needed.
//!
//! A new schema change raises [`crate::db::SCHEMA_VERSION`], adds one function to the list
//! of steps, and keeps the previous version's writer here for its test.

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use crate::db::{
    META, META_NEXT_SAMPLE, META_SCHEMA_VERSION, RedbConfig, SAMPLES, SCHEMA_VERSION, now_ns,
    open_database, redb_err, store_file, stored_version,
};
use crate::schema::StoreError;

/// One migration step: upgrades the tables from the version it is listed with to the next one,
/// inside the transaction it is given (the caller bumps the version in the same transaction).
type Step = fn(&WriteTransaction) -> Result<(), StoreError>;

/// Every step, by the version it upgrades from.
const STEPS: &[(u32, Step)] = &[(1, version_1_to_2)];

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version the store had.
    pub from: u32,
    /// The version it has now.
    pub to: u32,
    /// Where the file was copied before the first step, if anything was migrated.
    pub backup: Option<PathBuf>,
}

impl MigrationReport {
    /// Whether the store was already current.
    pub fn was_current(&self) -> bool {
        self.from == self.to
    }
}

/// Upgrades the store in `data_dir` to this build's schema version.
///
/// A current store is left alone; a newer one is refused with [`StoreError::TooNew`]. Otherwise
/// the file is first copied to `metrics.redb.v<from>.<unix seconds>.bak` beside it (synced to
/// disk), then each step runs in its own transaction, so a failure leaves the store at the last
/// version that completed.
pub fn migrate(data_dir: &Path) -> Result<MigrationReport, StoreError> {
    let path = store_file(data_dir);
    if !path.is_file() {
        return Err(StoreError::Invalid(format!(
            "no metrics store at {}, expected a file to migrate",
            path.display()
        )));
    }
    let db = open_database(&path, &RedbConfig::default(), None)?;
    let from = stored_version(&*db)?.ok_or_else(|| {
        StoreError::Corrupt("no schema version in meta, expected a perfopt metrics store".into())
    })?;
    if from == SCHEMA_VERSION {
        return Ok(MigrationReport {
            from,
            to: from,
            backup: None,
        });
    }
    if from > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    drop(db);
    let backup = back_up(&path, from)?;
    let db = open_database(&path, &RedbConfig::default(), None)?;
    for version in from..SCHEMA_VERSION {
        run_step(&db, version)?;
    }
    Ok(MigrationReport {
        from,
        to: SCHEMA_VERSION,
        backup: Some(backup),
    })
}

fn run_step(db: &Database, version: u32) -> Result<(), StoreError> {
    let step = STEPS
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, step)| *step)
        .ok_or_else(|| {
            StoreError::Invalid(format!("no migration from schema version {version}"))
        })?;
    let txn = db.begin_write().map_err(redb_err)?;
    step(&txn)?;
    txn.open_table(META)
        .map_err(redb_err)?
        .insert(META_SCHEMA_VERSION, u64::from(version + 1))
        .map_err(redb_err)?;
    txn.commit().map_err(redb_err)
}

/// Copies the store beside itself, under a name no other backup has, and syncs the copy.
fn back_up(path: &Path, version: u32) -> Result<PathBuf, StoreError> {
    let secs = now_ns() / 1_000_000_000;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let io = |e: std::io::Error, what: &Path| {
        StoreError::Io(format!(
            "cannot back up the store to {}: {e}",
            what.display()
        ))
    };
    for n in 0..1000 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let backup = path.with_file_name(format!("{name}.v{version}.{secs}{suffix}.bak"));
        if backup.exists() {
            continue;
        }
        std::fs::copy(path, &backup).map_err(|e| io(e, &backup))?;
        File::open(&backup)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(e, &backup))?;
        return Ok(backup);
    }
    Err(StoreError::Io(format!(
        "cannot back up {}: 1000 backups of this second exist already",
        path.display()
    )))
}

/// Version 1's raw samples: start time in nanoseconds to JSON.
const V1_SAMPLES: TableDefinition<u64, &[u8]> = TableDefinition::new("samples");

/// Moves raw samples from `samples` (keyed by start time) to `raw_samples` (keyed by start time
/// and sequence), numbering them in key order.
fn version_1_to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut seq = 0u64;
    {
        let old = txn.open_table(V1_SAMPLES).map_err(redb_err)?;
        let mut new = txn.open_table(SAMPLES).map_err(redb_err)?;
        for row in old.iter().map_err(redb_err)? {
            let (k, v) = row.map_err(redb_err)?;
            new.insert((k.value(), seq), v.value()).map_err(redb_err)?;
            seq += 1;
        }
    }
    txn.delete_table(V1_SAMPLES).map_err(redb_err)?;
    txn.open_table(META)
        .map_err(redb_err)?
        .insert(META_NEXT_SAMPLE, seq)
        .map_err(redb_err)?;
    Ok(())
}

/// The writer of schema version 1, kept to test the migration from it.
pub mod version_1 {
    use std::path::Path;

    use perf_core::TransferMetrics;

    use crate::datadir::create_private_dir;
    use crate::db::{
        BUCKETS, META, META_CREATED_AT, META_SCHEMA_VERSION, RedbConfig, THRESHOLDS,
        encode_bucket_key, encode_sample, now_ns, open_database, redb_err, store_file,
    };
    use crate::schema::{Bucket, BucketKey, StoreError};

    use super::V1_SAMPLES;

    /// Creates a version-1 store in `data_dir` holding `samples` and `buckets`, as perfopt
    /// before schema version 2 wrote it (samples with the same start time replace each other).
    pub fn write_store(
        data_dir: &Path,
        samples: &[TransferMetrics],
        buckets: &[(BucketKey, Bucket)],
    ) -> Result<(), StoreError> {
        create_private_dir(data_dir)?;
        let db = open_database(&store_file(data_dir), &RedbConfig::default(), None)?;
        let txn = db.begin_write().map_err(redb_err)?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert(META_SCHEMA_VERSION, 1).map_err(redb_err)?;
            meta.insert(META_CREATED_AT, now_ns()).map_err(redb_err)?;
            let mut table = txn.open_table(V1_SAMPLES).map_err(redb_err)?;
            for m in samples {
                table
                    .insert(m.started_at.as_nanos(), encode_sample(m)?.as_slice())
                    .map_err(redb_err)?;
            }
            let mut table = txn.open_table(BUCKETS).map_err(redb_err)?;
            for (k, b) in buckets {
                table
                    .insert(encode_bucket_key(k).as_slice(), b.to_bytes().as_slice())
                    .map_err(redb_err)?;
            }
            txn.open_table(THRESHOLDS).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }
}
