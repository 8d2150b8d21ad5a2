//! The host runtime's retry and supervision without sockets: workers in memory whose
//! connections break on cue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use perf_core::{FailureKind, FixedPolicy, Method, TransferRequest};
use perf_platform::InProcessShm;

use super::{ConnectCarrier, Host, HostConfig};
use crate::carrier::Carrier;
use crate::executor::TransferError;
use crate::grpc::checksum;
use crate::memory_carrier::{MemoryCarrier, Records, Script};
use crate::pool::{SegmentPool, SegmentPoolConfig};
use crate::reference::Secret;

/// A host over one worker in memory, reconnected to a fresh carrier each time it breaks; all
/// its carriers follow `script`. Returns the host, its records and how often it connected.
async fn host(script: Script, retries: u32) -> (Host, Arc<Records>, Arc<AtomicU64>) {
    let shm = InProcessShm::default();
    let secret = Secret::from_bytes([9; 32]);
    let script = Arc::new(Mutex::new(script));
    let connects = Arc::new(AtomicU64::new(0));
    let connect: ConnectCarrier = {
        let (shm, secret, connects) = (shm.clone(), secret.clone(), connects.clone());
        Arc::new(move || {
            connects.fetch_add(1, Ordering::Relaxed);
            let mut carrier = MemoryCarrier::new(&shm, secret.clone());
            carrier.script = script.clone();
            Box::pin(async move { Ok(Arc::new(carrier) as Arc<dyn Carrier>) })
        })
    };
    let pool = SegmentPool::new(Arc::new(shm), SegmentPoolConfig::default()).unwrap();
    let records = Arc::new(Records::default());
    let host = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .carrier(connect)
        .zero_copy(pool)
        .secret(secret)
        .sink(records.clone())
        .config(HostConfig {
            retries,
            ..HostConfig::default()
        })
        .start()
        .await
        .unwrap();
    (host, records, connects)
}

/// Any request: the policy decides gRPC whatever it says.
const REQUEST: TransferRequest = TransferRequest::new(0);

#[tokio::test]
async fn a_transfer_whose_worker_broke_is_recorded_failed_and_delivered_on_a_retry() {
    let script = Script {
        break_inline: 1,
        ..Script::default()
    };
    let (host, records, connects) = host(script, 1).await;
    let data = vec![3u8; 10_000];
    let out = host.transfer(&REQUEST, &data).await.unwrap();
    assert_eq!(out.ack.checksum, checksum(&data));
    let stats = host.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried, stats.restarts),
        (1, 0, 1, 1)
    );
    assert_eq!(
        connects.load(Ordering::Relaxed),
        2,
        "the broken worker was replaced"
    );
    let records = records.all();
    let failures: Vec<_> = records.iter().map(|r| r.failure).collect();
    assert_eq!(failures, [Some(FailureKind::Unavailable), None]);
}

#[tokio::test]
async fn a_transfer_fails_for_good_once_its_retries_run_out() {
    let script = Script {
        break_inline: 10,
        ..Script::default()
    };
    let (host, records, _) = host(script, 2).await;
    let err = host.transfer(&REQUEST, &[1, 2, 3]).await.unwrap_err();
    assert!(err.worker_gone(), "{err}");
    let stats = host.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 2));
    let records = records.all();
    assert_eq!(records.len(), 3, "every attempt is recorded");
    assert!(records.iter().all(|r| !r.success));
}

#[tokio::test]
async fn a_worker_that_read_other_bytes_is_not_retried() {
    let script = Script {
        corrupt: true,
        ..Script::default()
    };
    let (host, _, connects) = host(script, 1).await;
    let err = host.transfer(&REQUEST, &[1, 2, 3]).await.unwrap_err();
    assert!(matches!(err, TransferError::Corrupted { .. }), "{err}");
    let stats = host.stats();
    assert_eq!((stats.failed, stats.retried), (1, 0));
    assert_eq!(connects.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_host_lends_from_its_pool_by_the_executor_s_loan_path() {
    let (host, _, _) = host(Script::default(), 1).await;
    let mut lease = host.loan(100).unwrap();
    lease.as_mut_slice()[..3].copy_from_slice(b"abc");
    let out = host
        .send_lease(&TransferRequest::new(0), lease, 3)
        .await
        .unwrap();
    assert_eq!(out.ack.checksum, checksum(b"abc"));
    assert_eq!(host.pool().unwrap().stats().created, 1);
}
