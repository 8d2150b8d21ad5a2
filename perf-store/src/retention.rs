//! Retention: how long raw samples and each bucket granularity are kept, and the clean-up that
//! deletes what is older, archiving it first to a gzip-compressed JSON-lines file when asked.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use perf_core::Timestamp;
use redb::Durability;
use serde_json::json;

use crate::datadir::create_private_dir;
use crate::db::{
    BUCKETS, RedbBackend, SAMPLES, bucket_key_prefix, decode_bucket_key, decode_sample, redb_err,
};
use crate::schema::{Bucket, Granularity, StoreError};

const DAY: u64 = 24 * 3600;

/// How long each kind of row is kept, and where removed rows are archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (default 7 days).
    pub samples: Duration,
    /// 1-second buckets (default 1 day).
    pub second_buckets: Duration,
    /// 1-minute buckets (default 30 days).
    pub minute_buckets: Duration,
    /// 1-hour buckets (default 1 year).
    pub hour_buckets: Duration,
    /// A directory to archive removed rows into before they are deleted; `None` deletes only.
    pub archive_dir: Option<PathBuf>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            samples: Duration::from_secs(7 * DAY),
            second_buckets: Duration::from_secs(DAY),
            minute_buckets: Duration::from_secs(30 * DAY),
            hour_buckets: Duration::from_secs(365 * DAY),
            archive_dir: None,
        }
    }
}

impl Retention {
    /// How long buckets of `g` are kept.
    pub fn buckets(&self, g: Granularity) -> Duration {
        match g {
            Granularity::Second => self.second_buckets,
            Granularity::Minute => self.minute_buckets,
            Granularity::Hour => self.hour_buckets,
        }
    }
}

/// What one clean-up removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Raw samples removed.
    pub samples: u64,
    /// 1-second buckets removed.
    pub second_buckets: u64,
    /// 1-minute buckets removed.
    pub minute_buckets: u64,
    /// 1-hour buckets removed.
    pub hour_buckets: u64,
    /// The archive written, if archiving is configured and anything was removed.
    pub archive: Option<PathBuf>,
}

impl CleanupReport {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.samples + self.second_buckets + self.minute_buckets + self.hour_buckets
    }

    fn count_mut(&mut self, g: Granularity) -> &mut u64 {
        match g {
            Granularity::Second => &mut self.second_buckets,
            Granularity::Minute => &mut self.minute_buckets,
            Granularity::Hour => &mut self.hour_buckets,
        }
    }
}

/// The archive being written: JSON lines through gzip.
struct Archive {
    path: PathBuf,
    out: GzEncoder<BufWriter<File>>,
}

impl Archive {
    fn create(dir: &Path, now: Timestamp) -> Result<Archive, StoreError> {
        create_private_dir(dir)?;
        let secs = now.as_nanos() / 1_000_000_000;
        let mut n = 0;
        let path = loop {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            let p = dir.join(format!("metrics-archive-{secs}{suffix}.jsonl.gz"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create_new(&path).map_err(|e| archive_err(&path, e))?;
        Ok(Archive {
            out: GzEncoder::new(BufWriter::new(file), Compression::default()),
            path,
        })
    }

    fn line(&mut self, value: &serde_json::Value) -> Result<(), StoreError> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(|e| archive_err(&self.path, e.into()))?;
        self.out
            .write_all(b"\n")
            .map_err(|e| archive_err(&self.path, e))
    }

    /// Completes the gzip stream and syncs the file to disk.
    fn finish(self) -> Result<PathBuf, StoreError> {
        let file = self
            .out
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| archive_err(&self.path, e))?;
        file.sync_all().map_err(|e| archive_err(&self.path, e))?;
        Ok(self.path)
    }
}

fn archive_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("cannot write archive {}: {e}", path.display()))
}

fn cutoff_secs(now: Timestamp, keep: Duration) -> u64 {
    (now.as_nanos() / 1_000_000_000).saturating_sub(keep.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedbBackend {
    /// Deletes raw samples that started, and buckets that start, more than their retention
    /// before `now`, in one durable transaction, and reports how many rows of each kind went.
    ///
    /// With an archive directory, every removed row is first written to a new
    /// `metrics-archive-<unix seconds>.jsonl.gz` there, one JSON object a line: samples as
    /// `{"kind":"sample","sample":{..}}`, buckets as `{"kind":"bucket","key":{..},"count":n,
    /// "bytes":"<hex of Bucket::to_bytes>"}`. The archive is synced before the deletion
    /// commits; if the commit then fails, the next clean-up archives those rows again.
    pub fn clean_up(
        &self,
        retention: &Retention,
        now: Timestamp,
    ) -> Result<CleanupReport, StoreError> {
        let mut report = CleanupReport::default();
        let mut archive = match &retention.archive_dir {
            Some(dir) => Some(Archive::create(dir, now)?),
            None => None,
        };
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let cutoff_ns = cutoff_secs(now, retention.samples).saturating_mul(1_000_000_000);
            let mut samples = txn.open_table(SAMPLES).map_err(redb_err)?;
            for row in samples
                .extract_from_if(..(cutoff_ns, 0), |_, _| true)
                .map_err(redb_err)?
            {
                let (_, v) = row.map_err(redb_err)?;
                if let Some(a) = &mut archive {
                    let sample = decode_sample(v.value())?;
                    a.line(&json!({ "kind": "sample", "sample": sample }))?;
                }
                report.samples += 1;
            }
            let mut buckets = txn.open_table(BUCKETS).map_err(redb_err)?;
            for g in Granularity::ALL {
                let lo = bucket_key_prefix(g, 0);
                let hi = bucket_key_prefix(g, cutoff_secs(now, retention.buckets(g)));
                for row in buckets
                    .extract_from_if(lo.as_slice()..hi.as_slice(), |_, _| true)
                    .map_err(redb_err)?
                {
                    let (k, v) = row.map_err(redb_err)?;
                    if let Some(a) = &mut archive {
                        let key = decode_bucket_key(k.value())?;
                        let count = Bucket::from_bytes(v.value()).map_or(0, |b| b.count());
                        a.line(&json!({
                            "kind": "bucket",
                            "key": key,
                            "count": count,
                            "bytes": hex(v.value()),
                        }))?;
                    }
                    *report.count_mut(g) += 1;
                }
            }
        }
        if report.total() == 0 {
            // Nothing to delete: leave the store as it was and drop the empty archive.
            drop(txn);
            if let Some(a) = archive {
                let path = a.finish()?;
                let _ = std::fs::remove_file(path);
            }
            return Ok(report);
        }
        if let Some(a) = archive {
            report.archive = Some(a.finish()?);
        }
        txn.commit().map_err(redb_err)?;
        Ok(report)
    }
}
