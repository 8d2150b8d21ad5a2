//! What `perfopt bench` and `perfopt model collect` measure with: one `perfopt worker` process
//! reached through the library's host runtime, transfers by a fixed method checked byte for
//! byte, what went another way than the method measured, warm-ups, progress and output files;
//! paired measurements ([`paired`]) and the calibration of a data directory made of them
//! ([`calibration`]).

pub(crate) mod calibration;
pub(crate) mod paired;

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;

use perf_core::{
    Decision, DecisionContext, FallbackReason, FixedPolicy, Method, TransferPolicy,
    TransferRequest, Verification,
};
use perfopt::transport::checksum::digest;
use perfopt::transport::grpc::Endpoint;
use perfopt::transport::pool::MIN_CLASS;
use perfopt::transport::{
    ExecutorConfig, Host, HostBuilder, HostConfig, PoolStats, SegmentPool, SegmentPoolConfig,
    TransferError, TransferOutcome, WorkerCommand,
};

use crate::args::MAX_BENCH_SIZE;
use crate::exit::Exit;

/// Untimed transfers before the timed ones, per size and method.
pub(crate) const WARMUPS: u32 = 2;

/// A transfer's weight in a progress bar: its size plus about 100 µs of fixed cost.
pub(crate) fn weight(size: u64) -> u64 {
    size + (100 << 10)
}

/// A progress bar over `work` units on a terminal's standard error, hidden elsewhere.
pub(crate) fn progress_bar(work: u64) -> indicatif::ProgressBar {
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(work)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {elapsed_precise} (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress
}

/// The median of `samples` (the mean of the middle two for an even count); None when empty.
pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    perf_core::crossover::median(&mut samples.to_vec())
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so
/// a reader never sees half a file; true when it replaced an existing file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<bool> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let existed = path.exists();
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(existed)
}

/// Segments for payloads up to `largest` bytes: every pooled class up to it, so nothing large
/// goes one-off, within twice the largest class; `reuse` keeps returned segments for the next
/// transfer (pre-faulted, as `perfopt run` carries), else each transfer gets a fresh one.
pub(crate) fn segments(largest: u64, reuse: Reuse) -> Result<SegmentPool, Exit> {
    let max_class = (largest as usize)
        .next_power_of_two()
        .clamp(MIN_CLASS, MAX_BENCH_SIZE as usize);
    let defaults = SegmentPoolConfig::default();
    perfopt::segment_pool(SegmentPoolConfig {
        max_class,
        budget_bytes: 2 * max_class as u64,
        max_free_per_class: match reuse {
            Reuse::Pooled => defaults.max_free_per_class,
            Reuse::Fresh => 0,
        },
        ..defaults
    })
    .map_err(Exit::failed)
}

/// Whether a pool keeps the segments returned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Kept for the next transfer of their class.
    Pooled,
    /// Released: every transfer creates a fresh segment.
    Fresh,
}

/// A single-threaded runtime to drive the measurements.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Exit::failed)
}

/// A fixed method, verified as told (a [`FixedPolicy`] verifies as the default pool does).
struct Fixed {
    method: Method,
    verify: Verification,
}

impl TransferPolicy for Fixed {
    fn name(&self) -> &str {
        match self.method {
            Method::ZeroCopy => "always-zero-copy",
            Method::Grpc => "always-grpc",
        }
    }

    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        Decision {
            verify: self.verify,
            ..FixedPolicy(self.method).decide(request, ctx)
        }
    }
}

/// A host runtime that carries to one `perfopt worker` process by whichever method it is
/// told, zero-copy through its own segment pool; the worker checksums every byte unless told to
/// verify otherwise, and a failed transfer is not tried again.
pub(crate) struct Worker {
    host: Host,
    pool: SegmentPool,
}

/// A host on `pool`, deciding zero-copy unless told otherwise.
fn host(pool: &SegmentPool) -> HostBuilder {
    Host::builder(Arc::new(FixedPolicy(Method::ZeroCopy)))
        .zero_copy(pool.clone())
        .config(HostConfig {
            retries: 0,
            executor: ExecutorConfig::default(),
            ..HostConfig::default()
        })
}

impl Worker {
    /// Starts one worker process by `command` in a private run directory and waits until
    /// zero-copy reaches it.
    pub(crate) async fn spawn(pool: SegmentPool, command: WorkerCommand) -> Result<Worker, Exit> {
        let host = host(&pool)
            .spawn(command, 1)
            .start()
            .await
            .map_err(Exit::failed)?;
        Worker { host, pool }.checked().await
    }

    /// Another host runtime on the same worker process, zero-copy through `pool`.
    pub(crate) async fn share(&self, pool: SegmentPool) -> Result<Worker, Exit> {
        let stats = self.host.stats();
        let endpoint = stats
            .workers
            .first()
            .and_then(|w| w.endpoint.as_deref())
            .ok_or_else(|| Exit::failed("the worker process is gone"))?;
        let endpoint = Endpoint::parse(endpoint).map_err(Exit::failed)?;
        let mut builder = host(&pool).connect(endpoint);
        if let Some(secret) = self.host.secret() {
            builder = builder.secret(secret.clone());
        }
        let host = builder.start().await.map_err(Exit::failed)?;
        Worker { host, pool }.checked().await
    }

    /// Fails unless a zero-copy transfer reaches the worker as zero-copy.
    async fn checked(self) -> Result<Worker, Exit> {
        let bytes = vec![0x5A; 4096];
        let out = self
            .carry(Method::ZeroCopy, &bytes)
            .await
            .map_err(Exit::failed)?;
        match misread(&out, &bytes).or_else(|| went(&out, Method::ZeroCopy)) {
            None => Ok(self),
            Some(why) => Err(Exit::failed(format_args!(
                "the worker takes no zero-copy references ({why}), expected a local worker \
                 that maps them"
            ))),
        }
    }

    /// Carries `bytes` by `method` (zero-copy through this worker's pool), checksummed whole.
    pub(crate) async fn carry(
        &self,
        method: Method,
        bytes: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        self.carry_verified(method, Verification::Checksum, bytes)
            .await
    }

    /// Carries `bytes` by `method`, verified as `verify` says.
    pub(crate) async fn carry_verified(
        &self,
        method: Method,
        verify: Verification,
        bytes: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        let request = TransferRequest::new(bytes.len() as u64);
        let policy = Fixed { method, verify };
        self.host.transfer_with(&policy, &request, bytes).await
    }

    /// Lends a pooled segment, writes `bytes` into it as a producer would (untimed), and sends
    /// it verified as `verify` says: the loan path, where nothing is copied on the way.
    pub(crate) async fn carry_loaned(
        &self,
        bytes: &[u8],
        verify: Verification,
    ) -> Result<TransferOutcome, Exit> {
        let mut lease = self.host.loan(bytes.len()).map_err(Exit::failed)?;
        lease.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        self.send_loaned(lease, bytes.len(), verify).await
    }

    /// Lends a pooled segment of `len` bytes and sends it as it is, written before by
    /// whichever transfer used it last, verified by nothing: a bare notification round trip.
    pub(crate) async fn notify(&self, len: usize) -> Result<TransferOutcome, Exit> {
        let lease = self.host.loan(len).map_err(Exit::failed)?;
        self.send_loaned(lease, len, Verification::None).await
    }

    async fn send_loaned(
        &self,
        lease: perfopt::transport::Lease,
        len: usize,
        verify: Verification,
    ) -> Result<TransferOutcome, Exit> {
        let request = TransferRequest::new(len as u64);
        let policy = Fixed {
            method: Method::ZeroCopy,
            verify,
        };
        self.host
            .send_lease_with(&policy, &request, lease, len)
            .await
            .map_err(Exit::failed)
    }

    /// The pool the worker's zero-copy transfers draw from.
    pub(crate) fn pool(&self) -> &SegmentPool {
        &self.pool
    }

    /// What the pool did so far.
    pub(crate) fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Waits for what is in flight, then stops the worker process if this host started it.
    pub(crate) async fn shutdown(self) {
        self.host.shutdown().await;
    }
}

/// What the worker read wrong, if anything: other bytes than `bytes`, by the digest the
/// transfer was verified with (its length only, when verified by nothing).
pub(crate) fn misread(out: &TransferOutcome, bytes: &[u8]) -> Option<String> {
    let expected = digest(bytes, out.verified);
    let wrong_sum = out.verified != Verification::None && out.ack.checksum != expected;
    (wrong_sum || out.ack.length != bytes.len() as u64).then(|| {
        format!(
            "the worker read {} bytes with {} digest {:#018x}, expected {} bytes with \
             {expected:#018x}",
            out.ack.length,
            out.verified,
            out.ack.checksum,
            bytes.len()
        )
    })
}

/// How the transfer went another way than by `method` with a usable latency, if it did.
pub(crate) fn went(out: &TransferOutcome, method: Method) -> Option<String> {
    let m = &out.metrics;
    if m.method == method && m.success && m.latency_us.is_finite() && m.latency_us > 0.0 {
        return None;
    }
    Some(match m.fallback {
        Some(f) => format!("fell back to {}: {}", m.method, fallback_name(f)),
        None if m.method != method => format!("decided {}: {}", m.decided_method, m.reason),
        None => format!("no usable latency ({} µs)", m.latency_us),
    })
}

fn fallback_name(f: FallbackReason) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{f:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_replaces_atomically_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.toml");
        assert!(!write_atomically(&path, "a").unwrap());
        assert!(write_atomically(&path, "b").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pools_keep_their_segments_only_when_pooled() {
        let bytes = 64 << 10;
        for (reuse, reused) in [(Reuse::Pooled, 1), (Reuse::Fresh, 0)] {
            let pool = segments(bytes as u64, reuse).unwrap();
            drop(pool.acquire(bytes).unwrap());
            drop(pool.acquire(bytes).unwrap());
            assert_eq!(pool.stats().reused, reused, "{reuse:?}");
        }
    }
}
