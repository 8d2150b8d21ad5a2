//! The doctor's checks of a data directory: whether each kind of command can open what it
//! needs there ([`check_access`]), and the store's integrity of every page, schema version, row
//! counts, and a decode of every stored row ([`check`]), without ever writing the file.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableError};

use super::file::{Access, StoreFile, inspect, open_store_file};
use super::models::corrupt;
use super::storage::ReadOnlyOverlay;
use super::{
    BUCKETS, META, META_NEXT_SAMPLE, MODELS, RedbReader, SAMPLES, THRESHOLDS, decode_bucket_key,
    decode_change, decode_model, decode_sample, expect_current, no_panic, read_table, redb_err,
    store_file, stored_version,
};
use crate::schema::{Bucket, StoreError};

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
    match inspect(&path) {
        StoreFile::Regular { bytes } => report.file_bytes = Some(bytes),
        StoreFile::Missing => {
            report.problem(format!(
                "no metrics store at {}, expected a file",
                path.display()
            ));
            return report;
        }
        StoreFile::NotRegular { what } => {
            report.problem(
                StoreError::NotAFile {
                    path: path.clone(),
                    what: what.to_string(),
                }
                .to_string(),
            );
            return report;
        }
        StoreFile::Unknown { reason } => {
            report.problem(format!("cannot look at {}: {reason}", path.display()));
            return report;
        }
    }
    let opened = no_panic(|| {
        let file = open_store_file(&path, Access::Read)?;
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

/// What the commands that use a data directory would meet there; each field is what one kind
/// of command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessReport {
    /// The store's file.
    pub path: PathBuf,
    /// What is at the store's path.
    pub store: StoreFile,
    /// Whether a new file can be made in the data directory, or, while it is missing, whether
    /// it can be created: what `perfopt run` needs for a new store and `migrate` for a backup.
    pub directory: Result<(), String>,
    /// Whether the store's file opens for writing, as `perfopt run`, `cleanup` and `migrate`
    /// open it; `None` when there is no regular file to open.
    pub write: Option<Result<(), String>>,
    /// Whether the store opens for reading, as `perfopt stats` and `export` open it; `None`
    /// when there is no regular file to open.
    pub read: Option<Result<(), String>>,
}

impl AccessReport {
    /// Every problem, one sentence each; empty when every command finds what it needs.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.directory {
            out.push(e.clone());
        }
        match &self.store {
            StoreFile::NotRegular { what } => out.push(
                StoreError::NotAFile {
                    path: self.path.clone(),
                    what: what.to_string(),
                }
                .to_string(),
            ),
            StoreFile::Unknown { reason } => {
                out.push(format!("cannot look at {}: {reason}", self.path.display()))
            }
            StoreFile::Missing | StoreFile::Regular { .. } => {}
        }
        if let Some(Err(e)) = &self.write {
            out.push(format!(
                "metrics store {} cannot be opened for writing, which `perfopt run`, `cleanup` \
                 and `migrate` need: {e}",
                self.path.display()
            ));
        }
        if let Some(Err(e)) = &self.read {
            out.push(format!(
                "metrics store {} cannot be opened for reading, which `perfopt stats` and \
                 `export` need: {e}",
                self.path.display()
            ));
        }
        out
    }
}

/// Checks that the commands using the store in `data_dir` can open what they need: the
/// directory for new files, the store for writing and for reading. It never blocks on a path
/// that is not a regular file (that path is only looked at), and never writes the store.
pub fn check_access(data_dir: &Path) -> AccessReport {
    let path = store_file(data_dir);
    let store = inspect(&path);
    let directory = probe_directory(data_dir);
    let (write, read) = match &store {
        StoreFile::Regular { .. } => {
            let write = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map(drop)
                .map_err(|e| e.to_string());
            let read = RedbReader::open(data_dir)
                .map(drop)
                .map_err(|e| e.to_string());
            (Some(write), Some(read))
        }
        StoreFile::Missing | StoreFile::NotRegular { .. } | StoreFile::Unknown { .. } => {
            (None, None)
        }
    };
    AccessReport {
        path,
        store,
        directory,
        write,
        read,
    }
}

/// Whether a file can be created in `dir`, or in the nearest directory above it that exists
/// when `dir` is missing (where it would be created).
fn probe_directory(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) if at == dir => {
                return Err(format!(
                    "data directory {} exists but is not a directory",
                    dir.display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "data directory {} cannot be created: {} is not a directory",
                    dir.display(),
                    at.display()
                ));
            }
            // A file on the way says "not a directory" for the path below it: look higher.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match at.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                    _ => at = Path::new("."),
                }
            }
            Err(e) => return Err(format!("cannot look at {}: {e}", at.display())),
        }
    }
    tempfile::Builder::new()
        .prefix(".perfopt-doctor-")
        .tempfile_in(at)
        .map(drop)
        .map_err(|e| {
            if at == dir {
                format!("data directory {} is not writable: {e}", dir.display())
            } else {
                format!(
                    "data directory {} is missing and cannot be created in {}: {e}",
                    dir.display(),
                    at.display()
                )
            }
        })
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::RedbBackend;

    /// Runs `f` on a thread and returns what it returns, failing the test if it takes more than
    /// 10 s (the thread is left behind: it is what hangs).
    fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("finished within 10 s, expected no blocking open")
    }

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("the mkfifo command (coreutils) runs");
        assert!(made.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn a_healthy_store_opens_for_writing_and_reading() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbBackend::open(dir.path()).unwrap());
        let report = check_access(dir.path());
        assert!(
            matches!(report.store, StoreFile::Regular { .. }),
            "{report:?}"
        );
        assert_eq!(report.directory, Ok(()));
        assert_eq!(report.write, Some(Ok(())));
        assert_eq!(report.read, Some(Ok(())));
        assert_eq!(report.problems(), Vec::<String>::new());
        let missing = check_access(&dir.path().join("new/deeper"));
        assert_eq!(missing.store, StoreFile::Missing);
        assert_eq!(missing.problems(), Vec::<String>::new(), "run creates it");
    }

    #[test]
    fn a_fifo_in_place_of_the_store_is_reported_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = store_file(dir.path());
        mkfifo(&path);
        let data = dir.path().to_path_buf();
        let (access, report) = within_deadline(move || (check_access(&data), check(&data)));
        let expected = format!(
            "metrics store {} is a FIFO, expected a regular file",
            path.display()
        );
        assert_eq!(access.problems(), vec![expected.clone()]);
        assert_eq!(report.problems, vec![expected.clone()]);
        let data = dir.path().to_path_buf();
        let opened = within_deadline(move || {
            (
                RedbBackend::open(&data).map(drop),
                RedbReader::open(&data).map(drop),
            )
        });
        assert_eq!(opened.0.unwrap_err().to_string(), expected);
        assert_eq!(opened.1.unwrap_err().to_string(), expected);
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_or_a_directory_in_place_of_the_store_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = store_file(dir.path());
        std::os::unix::fs::symlink(dir.path().join("gone.redb"), &path).unwrap();
        let problems = check_access(dir.path()).problems();
        assert_eq!(
            problems,
            vec![format!(
                "metrics store {} is a symbolic link to nothing, expected a regular file",
                path.display()
            )]
        );
        assert_eq!(check(dir.path()).problems, problems);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(
            check_access(dir.path()).problems(),
            vec![format!(
                "metrics store {} is a directory, expected a regular file",
                path.display()
            )]
        );
    }

    /// Makes a file immutable (`chattr +i`) until dropped, also when the test fails.
    struct Immutable(PathBuf);

    impl Immutable {
        fn set(path: &Path) -> Immutable {
            let out = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .expect("the chattr command (e2fsprogs) runs");
            assert!(
                out.status.success(),
                "chattr +i {} failed, expected a filesystem with immutable files (ext4, tmpfs \
                 on Linux 6.0 or later) and root: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            Immutable(path.to_path_buf())
        }
    }

    impl Drop for Immutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_immutable_store_is_reported_unwritable_and_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbBackend::open(dir.path()).unwrap());
        let path = store_file(dir.path());
        let _guard = Immutable::set(&path);
        let report = check_access(dir.path());
        assert_eq!(report.read, Some(Ok(())));
        let problems = report.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "metrics store {} cannot be opened for writing",
                path.display()
            )),
            "{problems:?}"
        );
        assert!(RedbBackend::open(dir.path()).is_err());
        assert_eq!(
            RedbReader::open(dir.path())
                .unwrap()
                .rows()
                .unwrap()
                .samples,
            0
        );
    }

    #[test]
    fn a_data_directory_that_is_a_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            check_access(&file).directory,
            Err(format!(
                "data directory {} exists but is not a directory",
                file.display()
            ))
        );
        assert_eq!(
            check_access(&file.join("below")).directory,
            Err(format!(
                "data directory {} cannot be created: {} is not a directory",
                file.join("below").display(),
                file.display()
            ))
        );
    }
}
