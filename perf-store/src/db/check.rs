//! The doctor's check of a store: integrity of every page, schema version, row counts, and a
//! decode of every stored row, without ever writing the file.

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableError};

use super::models::corrupt;
use super::storage::ReadOnlyOverlay;
use super::{
    BUCKETS, META, META_NEXT_SAMPLE, MODELS, SAMPLES, THRESHOLDS, decode_bucket_key, decode_change,
    decode_model, decode_sample, expect_current, no_panic, read_table, redb_err, store_file,
    stored_version,
};
use crate::model::{Bucket, StoreError};

/// How many problems a report lists before it summarises the rest.
const MAX_PROBLEMS: usize = 50;

/// Rows per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRows {
    /// Raw samples.
    pub samples: u64,
    /// Buckets of every granularity.
    pub buckets: u64,
    /// Threshold changes.
    pub thresholds: u64,
    /// Saved model versions, of every model.
    pub models: u64,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The store's file.
    pub path: PathBuf,
    /// Its size in bytes, if it exists.
    pub file_bytes: Option<u64>,
    /// The stored schema version, if it could be read.
    pub schema_version: Option<u32>,
    /// Rows per table, as far as they could be counted.
    pub rows: TableRows,
    /// Everything wrong, one sentence each; empty for a healthy store.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether the store is healthy.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what);
        } else if self.problems.len() == MAX_PROBLEMS {
            self.problems.push(format!(
                "more problems, only the first {MAX_PROBLEMS} are listed"
            ));
        }
    }
}

/// Checks the store in `data_dir` and reports what is wrong; it never writes the file and never
/// panics, whatever the file holds.
///
/// The file is opened read-only: redb's repair and checksum verification of every page run on
/// an in-memory overlay of it. Run it while no perfopt process writes the store, or it may
/// report a commit in flight as damage.
pub fn check(data_dir: &Path) -> CheckReport {
    let path = store_file(data_dir);
    let mut report = CheckReport {
        path: path.clone(),
        ..CheckReport::default()
    };
    match std::fs::metadata(&path) {
        Ok(m) => report.file_bytes = Some(m.len()),
        Err(e) => {
            report.problem(format!("no metrics store at {}: {e}", path.display()));
            return report;
        }
    }
    let opened = no_panic(|| {
        let file = File::open(&path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
        let overlay = ReadOnlyOverlay::new(file)
            .map_err(|e| StoreError::Io(format!("cannot read {}: {e}", path.display())))?;
        Builder::new()
            .set_cache_size(16 << 20)
            .set_check_integrity_on_open(true)
            .create_with_backend(overlay)
            .map_err(redb_err)
    });
    let db = match opened {
        Ok(db) => db,
        Err(e) => {
            report.problem(format!("cannot open the store: {e}"));
            return report;
        }
    };
    if let Err(e) = no_panic(|| scan(&db, &mut report)) {
        report.problem(e.to_string());
    }
    report
}

fn scan(db: &Database, report: &mut CheckReport) -> Result<(), StoreError> {
    let Some(version) = stored_version(db)? else {
        report.problem("no schema version in meta, expected a perfopt metrics store".to_string());
        return Ok(());
    };
    report.schema_version = Some(version);
    if let Err(e) = expect_current(version) {
        report.problem(e.to_string());
        return Ok(());
    }
    let txn = db.begin_read().map_err(redb_err)?;
    let next_sample = read_table(&txn, META)?
        .get(super::META_NEXT_SAMPLE)
        .map_err(redb_err)?
        .map(|g| g.value());
    let mut max_seq = None;
    for row in read_table(&txn, SAMPLES)?.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        let (ns, seq) = k.value();
        report.rows.samples += 1;
        max_seq = max_seq.max(Some(seq));
        if let Err(e) = decode_sample(v.value()) {
            report.problem(format!("raw sample ({ns}, {seq}): {e}"));
        }
    }
    match (next_sample, max_seq) {
        (None, _) => report.problem(format!("meta has no {META_NEXT_SAMPLE}")),
        (Some(next), Some(max)) if next <= max => report.problem(format!(
            "meta {META_NEXT_SAMPLE} is {next}, expected more than the largest stored sequence {max}"
        )),
        _ => {}
    }
    for row in read_table(&txn, BUCKETS)?.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        report.rows.buckets += 1;
        match decode_bucket_key(k.value()) {
            Ok(key) => {
                if let Err(e) = Bucket::from_bytes(v.value()) {
                    report.problem(format!("bucket {key:?}: {e}"));
                }
            }
            Err(e) => report.problem(e.to_string()),
        }
    }
    for row in read_table(&txn, THRESHOLDS)?.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        report.rows.thresholds += 1;
        if let Err(e) = decode_change(v.value()) {
            report.problem(format!("threshold change {}: {e}", k.value()));
        }
    }
    let models = match txn.open_table(MODELS) {
        Ok(t) => t,
        // A store from before models were kept has no table for them.
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(redb_err(e)),
    };
    for row in models.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        let (name, version) = k.value();
        report.rows.models += 1;
        if let Err(e) = perf_core::check_model(name, 0) {
            report.problem(format!("model v{version}: {e}"));
        }
        if version == 0 {
            report.problem(corrupt(name, version, "version 0, expected 1 or more"));
        }
        if let Err(e) = decode_model(v.value()) {
            report.problem(corrupt(name, version, &e));
        }
    }
    Ok(())
}
