//! The Python worker (python/perfopt-worker) behind the facade's host runtime: spawned by a
//! `WorkerCommand` from the venv that `python/setup_venv.py` makes, carrying payloads by both
//! methods; and the package's own pytest suite, so that `cargo test` runs it.
//!
//! These tests need `python3` with its `venv` and `pip` modules and the package registry
//! (the first run installs grpcio, numpy and xxhash into the venv); without them they fail
//! and say what is missing.

use std::process::Command;
use std::sync::Arc;

use perfopt::core::FixedProbe;
use perfopt::transport::checksum::digest;
use perfopt::transport::grpc::checksum;
use perfopt::transport::reply::{CallOptions, ReplyMethod};
use perfopt::transport::{TransferError, WorkerCommand};
use perfopt::{Method, Optimizer, TransferRequest, Verification};

use crate::python_venv::{repo, venv_python};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_carries_1_kib_to_64_mib_inline_zero_copy_and_loaned_with_checksums() {
    let python = venv_python();
    let optimizer = Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .build()
        .unwrap();
    let worker = WorkerCommand::new(python).arg("-m").arg("perfopt_worker");
    let host = optimizer.host().spawn(worker, 1).start().await.unwrap();
    let largest = payload(64 * MIB);
    for len in [KIB, 64 * KIB, MIB, 5 * MIB, 16 * MIB, 64 * MIB] {
        let data = &largest[..len];
        for method in [Method::Grpc, Method::ZeroCopy] {
            let request = TransferRequest::new(len as u64).with_override(method);
            let out = host
                .transfer(&request, data)
                .await
                .unwrap_or_else(|e| panic!("{len} bytes by {method}: {e}"));
            assert_eq!(out.metrics.method, method, "{len} bytes: {:?}", out.metrics);
            assert_eq!(out.metrics.fallback, None, "{len} bytes by {method}");
            assert!(out.metrics.success, "{len} bytes by {method}");
            assert_eq!(out.ack.length, len as u64, "{len} bytes by {method}");
            // By reference the default pool's sample, inline the whole payload.
            let verified = match method {
                Method::ZeroCopy => Verification::Sampled,
                Method::Grpc => Verification::Checksum,
            };
            assert_eq!(out.verified, verified, "{len} bytes by {method}");
            assert_eq!(
                out.ack.checksum,
                digest(data, verified),
                "{len} bytes by {method}"
            );
        }
    }
    // A loaned segment, written in place by the producer, is read in place by the worker.
    let mut lease = host.loan(32 * MIB).unwrap();
    lease.as_mut_slice()[..32 * MIB].copy_from_slice(&largest[..32 * MIB]);
    let request = TransferRequest::new(32 * MIB as u64).with_override(Method::ZeroCopy);
    let out = host.send_lease(&request, lease, 32 * MIB).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy, "{:?}", out.metrics);
    assert_eq!(out.metrics.fallback, None);
    assert_eq!(out.ack.checksum, digest(&largest[..32 * MIB], out.verified));
    let stats = host.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried, stats.restarts),
        (13, 0, 0, 0),
        "{stats:?}"
    );
    host.shutdown().await;
}

#[test]
fn the_python_worker_passes_its_pytest_suite() {
    let python = venv_python();
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("python/perfopt-worker"))
        .current_dir(repo())
        .output()
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && summary.contains(" passed") && !summary.contains("failed"),
        "pytest in python/perfopt-worker ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` little-endian f32s: 0.0, 0.25, 0.5, ... wrapping at 1024 so sums stay exact.
fn floats(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ((i % 1024) as f32 * 0.25).to_le_bytes())
        .collect()
}

fn as_f32(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
}

/// A kernel figure of `pid` from /proc/<pid>/status, in KiB (e.g. `RssAnon`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn array_call(mode: &str, floats: usize) -> CallOptions {
    CallOptions {
        metadata: [("mode".to_owned(), mode.to_owned())].into(),
        dtype: Some("<f4".to_owned()),
        shape: Some(vec![floats as u64]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_computes_on_payloads_in_place_and_replies_both_ways() {
    let python = venv_python();
    let optimizer = Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .build()
        .unwrap();
    let worker = WorkerCommand::new(python)
        .arg("-m")
        .arg("perfopt_worker.demo");
    let host = optimizer.host().spawn(worker, 1).start().await.unwrap();
    let pid = host.stats().workers[0]
        .pid
        .expect("a spawned worker has a pid");

    // A small array, summed: the reply is a 0-d float64 inside the acknowledgement.
    let small = floats(256);
    let request = TransferRequest::new(small.len() as u64).with_override(Method::Grpc);
    let reply = host
        .call_with(&request, &small, &array_call("sum", 256))
        .await
        .unwrap();
    assert_eq!(reply.metrics().method, ReplyMethod::Inline, "{reply:?}");
    assert_eq!(reply.dtype(), Some("<f8"));
    let sum = f64::from_le_bytes(reply.bytes().try_into().unwrap());
    assert_eq!(sum, as_f32(&small).map(f64::from).sum::<f64>());

    // 64 MiB of f32s by zero-copy, summed in the worker from the mapped segment: its private
    // memory grows by well under a tenth of the payload, so numpy read it where it lay.
    let n = 16 * MIB;
    let big = floats(n);
    let anon_before = status_kib(pid, "RssAnon");
    let request = TransferRequest::new(big.len() as u64).with_override(Method::ZeroCopy);
    let reply = host
        .call_with(&request, &big, &array_call("sum", n))
        .await
        .unwrap();
    let anon_grew_kib = status_kib(pid, "RssAnon").saturating_sub(anon_before);
    assert_eq!(reply.outcome().metrics.method, Method::ZeroCopy);
    assert_eq!(reply.outcome().metrics.fallback, None);
    let sum = f64::from_le_bytes(reply.bytes().try_into().unwrap());
    assert_eq!(sum, as_f32(&big).map(f64::from).sum::<f64>());
    assert!(
        anon_grew_kib * 1024 < (big.len() / 10) as u64,
        "the worker's private memory grew by {anon_grew_kib} KiB summing a {} MiB payload",
        big.len() / MIB
    );

    // The same array scaled: a 64 MiB reply the worker wrote once into its own segment, which
    // the host reads in place.
    let reply = host
        .call_with(&request, &big, &array_call("scale", n))
        .await
        .unwrap();
    assert_eq!(reply.metrics().method, ReplyMethod::Segment, "{reply:?}");
    assert_eq!(reply.len(), big.len());
    assert_eq!(reply.shape(), Some(vec![n as u64]));
    assert!(
        as_f32(reply.bytes())
            .zip(as_f32(&big))
            .all(|(got, sent)| got == sent * 2.0),
        "the scaled reply holds twice the payload"
    );
    drop(reply);

    // Echoes, 1 KiB to 256 MiB each way by each method: the reply holds the payload's bytes.
    let largest = floats(64 * MIB);
    for len in [KIB, MIB, 256 * MIB] {
        let sent = &largest[..len];
        for method in [Method::Grpc, Method::ZeroCopy] {
            let request = TransferRequest::new(len as u64).with_override(method);
            let reply = host
                .call_with(&request, sent, &array_call("echo", len / 4))
                .await
                .unwrap_or_else(|e| panic!("{len} bytes by {method}: {e}"));
            assert_eq!(reply.outcome().metrics.method, method, "{len} bytes");
            assert_eq!(reply.len(), len, "{len} bytes by {method}");
            assert_eq!(
                checksum(reply.bytes()),
                checksum(sent),
                "{len} bytes by {method}"
            );
            let record = reply
                .outcome()
                .metrics
                .reply
                .expect("the record has the reply");
            assert_eq!(record.size, len as u64);
        }
    }

    // The worker's code raising: a typed error with its message, and the worker serves on.
    let err = host
        .call_with(&request, &big, &array_call("no-such-mode", n))
        .await
        .unwrap_err();
    match &err {
        TransferError::Handler { kind, message, .. } => {
            assert_eq!(kind, "ValueError", "{err}");
            assert!(message.contains("no-such-mode"), "{err}");
        }
        other => panic!("expected the handler's error, got {other}"),
    }
    let reply = host
        .call_with(&request, &big, &array_call("sum", n))
        .await
        .unwrap();
    assert_eq!(reply.len(), 8);
    let stats = host.stats();
    assert_eq!((stats.restarts, stats.retried), (0, 0), "{stats:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_killed_mid_call_is_replaced_and_the_call_retried_and_recorded() {
    let python = venv_python();
    let optimizer = Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .build()
        .unwrap();
    let records = Arc::new(Records::default());
    let worker = WorkerCommand::new(python).arg(repo().join("tests/e2e/python/hang_once.py"));
    let host = Arc::new(
        optimizer
            .host()
            .sink(records.clone())
            .spawn(worker, 1)
            .start()
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hung");
    let options = CallOptions {
        metadata: [("marker".to_owned(), marker.display().to_string())].into(),
        ..CallOptions::default()
    };
    let payload = payload(MIB);
    let call = {
        let (host, payload, options) = (host.clone(), payload.clone(), options.clone());
        tokio::spawn(async move {
            let request =
                TransferRequest::new(payload.len() as u64).with_override(Method::ZeroCopy);
            host.call_with(&request, &payload, &options).await
        })
    };
    // The first call hangs in the worker's code: kill the process under it.
    let hung_pid: i32 = loop {
        if let Ok(pid) = std::fs::read_to_string(&marker)
            && let Ok(pid) = pid.parse()
        {
            break pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let killed = Command::new("kill")
        .args(["-KILL", &hung_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let reply = call
        .await
        .unwrap()
        .expect("the call is retried on the replacement");
    let served = String::from_utf8(reply.bytes().to_vec()).unwrap();
    assert!(served.starts_with("served by "), "{served}");
    assert_ne!(served, format!("served by {hung_pid}"));
    drop(reply);
    let stats = host.stats();
    assert_eq!((stats.delivered, stats.retried), (1, 1), "{stats:?}");
    assert!(stats.restarts >= 1, "{stats:?}");
    let records = records.all();
    assert_eq!(
        records.len(),
        2,
        "the failed attempt and the delivered retry: {records:?}"
    );
    assert!(
        !records[0].success && records[0].failure.is_some(),
        "{records:?}"
    );
    assert!(records[1].success, "{records:?}");
}

/// Keeps every record it is sent.
#[derive(Default)]
struct Records(std::sync::Mutex<Vec<perfopt::TransferMetrics>>);

impl Records {
    fn all(&self) -> Vec<perfopt::TransferMetrics> {
        self.0.lock().unwrap().clone()
    }
}

impl perfopt::MetricsSink for Records {
    fn record(&self, m: &perfopt::TransferMetrics) {
        self.0.lock().unwrap().push(*m);
    }
}
