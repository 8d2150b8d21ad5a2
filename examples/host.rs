//! A host that spawns a worker process, transfers a payload, lends a segment, carries 1,000
//! transfers at once and reads the stats back, all through the library.
//!
//! Run with `cargo run --example host`. The worker is this same program started with `worker`
//! and the spawn contract's arguments (`--listen`, `--peer-pid`, `--secret-file`).

use std::error::Error;
use std::ffi::OsString;

use perfopt::core::{Method, SeriesQuery, Timestamp};
use perfopt::learn::LearnConfig;
use perfopt::transport::grpc::ServiceConfig;
use perfopt::transport::{SpawnedWorker, WorkerCommand};
use perfopt::{DataType, Optimizer, TransferRequest};

const MIB: usize = 1 << 20;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "worker") {
        return worker(args.collect());
    }
    let data = tempfile::tempdir()?;
    // The store, the cost models, learning (replaying what the store holds), the shared-memory
    // backend and the segment pool: one builder wires them.
    let optimizer = Optimizer::builder()
        .data_dir(data.path())
        .learning(LearnConfig::default())
        .build()?;
    for warning in optimizer.warnings() {
        eprintln!("warning: {warning}");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let worker = WorkerCommand::new(std::env::current_exe()?).arg("worker");
        let host = optimizer.host().spawn(worker, 1).start().await?;

        // One transfer: decided, carried, verified against the worker's checksum, recorded.
        let tensor = vec![7u8; 64 * MIB];
        let request = TransferRequest::new(0).with_data_type(DataType::Tensor);
        let outcome = host.transfer(&request, &tensor).await?;
        println!(
            "64 MiB went by {} in {:.0} us: {}",
            outcome.metrics.method,
            outcome.metrics.latency_us,
            outcome.decision.rationale()
        );

        // The loan path: write straight into shared memory; nothing is copied.
        let mut lease = host.loan(32 * MIB)?;
        lease.as_mut_slice()[..32 * MIB].fill(42);
        let outcome = host.send_lease(&request, lease, 32 * MIB).await?;
        println!("a loaned 32 MiB segment went by {}", outcome.metrics.method);

        // 1,000 transfers at once: callers beyond the host's room wait for it, none fails.
        let payload = std::sync::Arc::new(vec![1u8; 2 * MIB]);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1_000u64 {
            let (host, payload) = (host.clone(), payload.clone());
            tasks.spawn(async move {
                let len = 1 << (10 + i % 12);
                let request = TransferRequest::new(0).with_session(i);
                host.transfer(&request, &payload[..len]).await
            });
        }
        let mut delivered = 0;
        while let Some(done) = tasks.join_next().await {
            done??;
            delivered += 1;
        }
        let stats = host.stats();
        println!(
            "{delivered} of 1000 delivered; host: {} failed, {} retried, at most {} in flight",
            stats.failed, stats.retried, stats.peak_in_flight
        );
        host.shutdown().await;
        Ok::<(), Box<dyn Error>>(())
    })?;

    // What was recorded, read back from the store.
    optimizer.flush()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let hour = std::time::Duration::from_secs(3600);
    for method in [Method::Grpc, Method::ZeroCopy] {
        let point = optimizer.store_query().summary(&SeriesQuery {
            pool: None,
            method: Some(method),
            from: Timestamp((now - hour).as_nanos() as u64),
            to: Timestamp((now + hour).as_nanos() as u64),
            granularity_secs: 60,
        })?;
        println!(
            "{method}: {} transfers, latency p50 {:.0} us, p99 {:.0} us",
            point.latency_us.count, point.latency_us.p50, point.latency_us.p99
        );
    }
    let report = optimizer.shutdown();
    println!(
        "store: {} recorded, {} committed",
        report.store.recorded, report.store.committed
    );
    Ok(())
}

/// The worker side: serve the transfer protocol as the spawn contract says, until the host is
/// gone.
fn worker(args: Vec<OsString>) -> Result<(), Box<dyn Error>> {
    let worker = SpawnedWorker::from_args(args)?;
    let service = worker.service(ServiceConfig::default())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(worker.serve(service, std::future::pending()))?;
    Ok(())
}
