//! The executor's core without sockets: decide, carry, fall back, verify and record, against a
//! worker in memory on a virtual clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use perf_core::{
    FailureKind, FallbackReason, FixedPolicy, FixedProbe, Method, TransferRequest, Verification,
};
use perf_platform::InProcessShm;

use super::{Executor, ExecutorConfig, PIPELINE_MIN, STREAM_MIN, TransferError, TransferOutcome};
use crate::checksum::digest;
use crate::grpc::{ClientError, Code, checksum};
use crate::memory_carrier::{CALL_TIMEOUT, INLINE_DEADLINE, MemoryCarrier, Records, Script};
use crate::pool::{MIN_CLASS, SegmentPool, SegmentPoolConfig};
use crate::reference::Secret;

/// An executor deciding `method` every time, over a worker in memory whose calls follow
/// `script`, with a pool of `budget` bytes.
struct Pair {
    executor: Executor,
    records: Arc<Records>,
    calls: Arc<crate::memory_carrier::Calls>,
}

async fn pair(method: Method, script: Script, budget: u64) -> Pair {
    pair_with(method, script, budget, ExecutorConfig::default()).await
}

/// As [`pair`], with the executor configured by `config`.
async fn pair_with(method: Method, script: Script, budget: u64, config: ExecutorConfig) -> Pair {
    let executor_config = config;
    let shm = InProcessShm::default();
    let secret = Secret::from_bytes([7; 32]);
    let carrier = MemoryCarrier::new(&shm, secret.clone());
    *carrier.script.lock().unwrap() = script;
    let calls = carrier.calls.clone();
    let config = SegmentPoolConfig {
        budget_bytes: budget,
        ..SegmentPoolConfig::default()
    };
    let pool = SegmentPool::new(Arc::new(shm), config).unwrap();
    let records = Arc::new(Records::default());
    let executor = Executor::connect(
        Arc::new(FixedPolicy(method)),
        carrier,
        Some((pool, secret)),
        Arc::new(FixedProbe::default()),
        executor_config,
    )
    .await
    .unwrap()
    .with_sink(records.clone());
    Pair {
        executor,
        records,
        calls,
    }
}

impl Pair {
    async fn send(&self, data: &[u8]) -> Result<TransferOutcome, TransferError> {
        self.executor.transfer(&TransferRequest::new(0), data).await
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(start_paused = true)]
async fn a_reference_the_worker_maps_carries_the_payload_by_zero_copy() {
    let p = pair(Method::ZeroCopy, Script::default(), 1 << 30).await;
    assert!(
        p.executor.pool().is_some(),
        "the worker in memory maps references"
    );
    let data = payload(100_000);
    let out = p.send(&data).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.metrics.fallback, None);
    assert_eq!(out.ack.checksum, checksum(&data));
    assert_eq!(p.calls.references.load(Ordering::Relaxed), 1);
    assert_eq!(p.calls.inline.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_reference_falls_back_to_grpc_and_the_record_says_why() {
    for (code, reason) in [
        (Code::PermissionDenied, FallbackReason::ReferenceRefused),
        (Code::Unauthenticated, FallbackReason::ReferenceRefused),
        (Code::Internal, FallbackReason::WorkerError),
    ] {
        let script = Script {
            refuse_references: Some(code),
            ..Script::default()
        };
        let p = pair(Method::ZeroCopy, script, 1 << 30).await;
        let data = payload(200_000);
        let out = p.send(&data).await.unwrap();
        assert_eq!(out.metrics.method, Method::Grpc, "{code}");
        assert_eq!(out.metrics.fallback, Some(reason), "{code}");
        assert!(out.metrics.success, "{code}");
        assert_eq!(out.ack.checksum, checksum(&data));
        assert_eq!(p.calls.inline.load(Ordering::Relaxed), 1, "{code}");
        assert_eq!(p.records.all().len(), 1, "one record per transfer");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_copy_checksum_mismatch_falls_back_and_a_grpc_one_is_an_error() {
    let script = Script {
        corrupt: true,
        ..Script::default()
    };
    let p = pair(Method::ZeroCopy, script, 1 << 30).await;
    let data = payload(4096);
    let err = p.send(&data).await.unwrap_err();
    assert!(matches!(err, TransferError::Corrupted { .. }), "{err}");
    let records = p.records.all();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].fallback, Some(FallbackReason::WorkerError));
    assert_eq!(records[0].failure, Some(FailureKind::Corrupted));
    assert_eq!(p.calls.references.load(Ordering::Relaxed), 1);
    assert_eq!(p.calls.inline.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_reference_times_out_at_the_call_deadline_and_falls_back() {
    let script = Script {
        hang_references: true,
        ..Script::default()
    };
    let p = pair(Method::ZeroCopy, script, 1 << 30).await;
    let data = payload(10_000);
    let started = tokio::time::Instant::now();
    let out = p.send(&data).await.unwrap();
    assert_eq!(
        started.elapsed(),
        CALL_TIMEOUT,
        "the virtual clock ran to the deadline"
    );
    assert_eq!(out.metrics.method, Method::Grpc);
    assert_eq!(out.metrics.fallback, Some(FallbackReason::Timeout));
    assert_eq!(out.ack.checksum, checksum(&data));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_inline_call_fails_as_a_timeout_that_another_worker_may_retry() {
    let script = Script {
        hang_inline: true,
        ..Script::default()
    };
    let p = pair(Method::Grpc, script, 1 << 30).await;
    let started = tokio::time::Instant::now();
    let err = p.send(&payload(1000)).await.unwrap_err();
    assert_eq!(started.elapsed(), INLINE_DEADLINE);
    assert!(
        matches!(
            err,
            TransferError::Grpc {
                source: ClientError::Timeout {
                    call: "send_inline",
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), FailureKind::Timeout);
    assert!(err.worker_gone());
    let records = p.records.all();
    assert_eq!(records.len(), 1, "a failed transfer is recorded too");
    assert!(!records[0].success);
    assert_eq!(records[0].failure, Some(FailureKind::Timeout));
}

#[tokio::test(start_paused = true)]
async fn a_transfer_waits_for_a_lent_segment_within_segment_wait() {
    // The budget holds one segment of the smallest class, and a loan holds it.
    let p = pair(Method::ZeroCopy, Script::default(), MIN_CLASS as u64).await;
    let lease = p.executor.loan(MIN_CLASS).unwrap();
    let data = payload(MIN_CLASS / 2);
    let give_back = async {
        tokio::time::sleep(ExecutorConfig::default().segment_wait / 2).await;
        drop(lease);
    };
    let request = TransferRequest::new(0);
    let (out, ()) = tokio::join!(p.executor.transfer(&request, &data), give_back);
    let out = out.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.metrics.fallback, None);
    assert_eq!(p.executor.pool().unwrap().stats().waited_served, 1);
}

#[tokio::test(start_paused = true)]
async fn a_transfer_falls_back_as_exhausted_when_no_segment_comes_back_in_time() {
    let p = pair(Method::ZeroCopy, Script::default(), MIN_CLASS as u64).await;
    let _held = p.executor.loan(MIN_CLASS).unwrap();
    let data = payload(MIN_CLASS / 2);
    let started = tokio::time::Instant::now();
    let out = p.send(&data).await.unwrap();
    assert_eq!(started.elapsed(), ExecutorConfig::default().segment_wait);
    assert_eq!(out.metrics.method, Method::Grpc);
    assert_eq!(out.metrics.fallback, Some(FallbackReason::ShmExhausted));
    assert_eq!(p.calls.references.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_large_payload_is_announced_part_by_part_and_a_loan_is_sent_without_a_copy() {
    let p = pair(Method::ZeroCopy, Script::default(), 1 << 30).await;
    let data = payload(PIPELINE_MIN + 12_345);
    let out = p.send(&data).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.ack.checksum, checksum(&data));
    assert_eq!(p.calls.streams.load(Ordering::Relaxed), 1);

    let mut lease = p.executor.loan(1000).unwrap();
    lease.as_mut_slice()[..5].copy_from_slice(b"hello");
    let out = p
        .executor
        .send_lease(&TransferRequest::new(0), lease, 5)
        .await
        .unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.ack.checksum, checksum(b"hello"));
    assert_eq!(out.ack.length, 5);
}

const VERIFICATIONS: [Verification; 3] = [
    Verification::Checksum,
    Verification::Sampled,
    Verification::None,
];

/// A pair whose worker speaks the `verify` extension and whose executor verifies as `verify`.
async fn verifying_pair(verify: Option<Verification>, script: Script) -> Pair {
    let script = Script {
        verify_feature: true,
        ..script
    };
    let config = ExecutorConfig {
        verify,
        ..ExecutorConfig::default()
    };
    pair_with(Method::ZeroCopy, script, 1 << 30, config).await
}

#[tokio::test(start_paused = true)]
async fn a_transfer_of_every_verification_delivers_by_zero_copy_and_is_recorded() {
    for verify in VERIFICATIONS {
        let p = verifying_pair(Some(verify), Script::default()).await;
        // Plain copies, copies in parts, and streamed copies whole or in parts.
        for len in [100_000, PIPELINE_MIN + 12_345, STREAM_MIN + 12_345] {
            let data = payload(len);
            let out = p.send(&data).await.unwrap();
            assert_eq!(out.metrics.method, Method::ZeroCopy, "{verify} {len}");
            assert_eq!(out.metrics.fallback, None, "{verify} {len}");
            assert_eq!(out.verified, verify);
            assert_eq!(out.ack.length, len as u64);
            assert_eq!(out.ack.checksum, digest(&data, verify), "{verify} {len}");
            assert_eq!(*p.calls.last_verify.lock().unwrap(), Some(verify));
        }
        let records = p.records.all();
        assert_eq!(records.len(), 3, "{verify}: one record per transfer");
        assert!(
            records
                .iter()
                .all(|r| r.success && r.method == Method::ZeroCopy)
        );
        // Only a full checksum has the worker read the large payloads part by part.
        let streamed = 2 * u64::from(verify == Verification::Checksum);
        assert_eq!(
            p.calls.streams.load(Ordering::Relaxed),
            streamed,
            "{verify}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_an_override_the_pools_setting_decides() {
    // A fixed policy decides as the default pool, which samples.
    let p = verifying_pair(None, Script::default()).await;
    let data = payload(3 << 20);
    let out = p.send(&data).await.unwrap();
    assert_eq!(out.decision.verify, Verification::Sampled);
    assert_eq!(out.verified, Verification::Sampled);
    assert_eq!(out.ack.checksum, digest(&data, Verification::Sampled));
}

#[tokio::test(start_paused = true)]
async fn a_worker_without_the_extension_is_asked_for_the_full_checksum() {
    for wanted in VERIFICATIONS {
        let config = ExecutorConfig {
            verify: Some(wanted),
            ..ExecutorConfig::default()
        };
        let p = pair_with(Method::ZeroCopy, Script::default(), 1 << 30, config).await;
        let data = payload(200_000);
        let out = p.send(&data).await.unwrap();
        assert_eq!(out.metrics.method, Method::ZeroCopy);
        assert_eq!(
            *p.calls.last_verify.lock().unwrap(),
            Some(Verification::Checksum),
            "{wanted}"
        );
        assert_eq!(out.verified, Verification::Checksum);
        assert_eq!(out.ack.checksum, checksum(&data));
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_digest_falls_back_unless_nothing_is_verified() {
    let corrupt = Script {
        corrupt: true,
        ..Script::default()
    };
    let sampled = verifying_pair(Some(Verification::Sampled), corrupt.clone()).await;
    let err = sampled.send(&payload(50_000)).await.unwrap_err();
    assert!(matches!(err, TransferError::Corrupted { .. }), "{err}");
    assert_eq!(
        sampled.records.all()[0].fallback,
        Some(FallbackReason::WorkerError)
    );
    // Verified by nothing, the worker's digest is not looked at, by reference or inline.
    let unverified = verifying_pair(Some(Verification::None), corrupt).await;
    let out = unverified.send(&payload(50_000)).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.verified, Verification::None);
}
