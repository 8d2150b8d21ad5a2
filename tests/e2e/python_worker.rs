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
use perfopt::transport::WorkerCommand;
use perfopt::transport::grpc::checksum;
use perfopt::{Method, Optimizer, TransferRequest};

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
            assert_eq!(out.ack.checksum, checksum(data), "{len} bytes by {method}");
        }
    }
    // A loaned segment, written in place by the producer, is read in place by the worker.
    let mut lease = host.loan(32 * MIB).unwrap();
    lease.as_mut_slice()[..32 * MIB].copy_from_slice(&largest[..32 * MIB]);
    let request = TransferRequest::new(32 * MIB as u64).with_override(Method::ZeroCopy);
    let out = host.send_lease(&request, lease, 32 * MIB).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy, "{:?}", out.metrics);
    assert_eq!(out.metrics.fallback, None);
    assert_eq!(out.ack.checksum, checksum(&largest[..32 * MIB]));
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
