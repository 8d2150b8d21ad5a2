//! The gRPC transport end to end: a real tonic server and client in this process, over a real
//! Unix domain socket and real TCP on 127.0.0.1.

#![cfg(unix)]

mod grpc_support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use perf_core::{SegmentId, Verification};
use perf_transport::Reference;
use perf_transport::grpc::{
    Ack, ClientConfig, ClientError, Code, DEFAULT_MAX_INLINE_BYTES, PROTOCOL_VERSION,
    ReferenceHandler, Refusal, ServiceConfig, WorkerHealth, checksum, host_id, same_host,
};

use grpc_support::{TRANSPORTS, Transport, Worker, payload, service, slow_tests};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_tells_the_host_what_the_worker_can_do_on_both_transports() {
    for transport in TRANSPORTS {
        let worker = Worker::plain(transport).await;
        let client = worker.client().await;
        let caps = client.negotiate().await.expect("negotiation succeeds");
        assert_eq!(caps.protocol_version, PROTOCOL_VERSION, "{transport:?}");
        assert_eq!(caps.pid, std::process::id(), "{transport:?}");
        assert_eq!(caps.host_id, host_id(), "{transport:?}");
        assert!(same_host(&caps), "{transport:?}: {caps:?}");
        assert!(!caps.zero_copy, "no handler, no zero-copy: {caps:?}");
        assert_eq!(caps.max_segment_bytes, 0, "{transport:?}");
        assert_eq!(caps.max_inline_bytes, DEFAULT_MAX_INLINE_BYTES);
        assert!(caps.platform.starts_with(std::env::consts::OS), "{caps:?}");
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_payloads_below_and_above_the_message_limit_arrive_intact() {
    for (transport, len) in [
        (Transport::Unix, KIB),
        (Transport::Unix, 5 * MIB),
        (Transport::Unix, 64 * MIB),
        (Transport::Tcp, KIB),
        (Transport::Tcp, 5 * MIB),
    ] {
        let worker = Worker::plain(transport).await;
        let client = worker.client().await;
        let sent = payload(len, len as u64);
        let ack = client
            .send_inline(len as u64, sent.clone(), "raw")
            .await
            .unwrap_or_else(|err| panic!("{transport:?} {len} bytes: {err}"));
        assert_eq!(ack.transfer_id, len as u64);
        assert_eq!(ack.length, len as u64, "{transport:?}");
        assert_eq!(ack.checksum, checksum(&sent), "{transport:?} {len} bytes");
        assert!(ack.worker_ns > 0, "{ack:?}");
        if cfg!(target_os = "linux") && len >= 5 * MIB {
            assert!(
                ack.worker_cpu_ns > 0,
                "copying {len} bytes takes cpu: {ack:?}"
            );
        }
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_slice_and_an_empty_payload_arrive_intact() {
    let worker = Worker::plain(Transport::Unix).await;
    let client = worker
        .client_with(ClientConfig {
            chunk_size: 64 * KIB,
            ..ClientConfig::default()
        })
        .await;
    let sent = payload(3 * MIB + 17, 3);
    let ack = client.send_inline_slice(1, &sent, "arrow").await.unwrap();
    assert_eq!(
        (ack.length, ack.checksum),
        (sent.len() as u64, checksum(&sent))
    );
    let empty = client.send_inline(2, Bytes::new(), "raw").await.unwrap();
    assert_eq!((empty.length, empty.checksum), (0, checksum(b"")));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_on_one_connection_each_arrive_intact() {
    let worker = Worker::plain(Transport::Unix).await;
    let client = worker.client().await;
    let mut tasks = Vec::new();
    for id in 0..32u64 {
        let client = client.clone();
        let sent = payload(((id as usize) * 97 * KIB) % (3 * MIB) + 1, id);
        tasks.push(tokio::spawn(async move {
            let ack = client.send_inline(id, sent.clone(), "raw").await.unwrap();
            (ack, checksum(&sent))
        }));
    }
    for (id, task) in tasks.into_iter().enumerate() {
        let (ack, expected) = task.await.unwrap();
        assert_eq!(ack.transfer_id, id as u64);
        assert_eq!(ack.checksum, expected, "transfer {id}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_max_inline_bytes_is_refused_and_the_connection_still_works() {
    let config = ServiceConfig {
        max_inline_bytes: MIB as u64,
        max_inflight_inline_bytes: MIB as u64,
        ..ServiceConfig::default()
    };
    let worker = Worker::start(Transport::Unix, service(config)).await;
    let client = worker.client().await;
    let err = client
        .send_inline(1, payload(2 * MIB, 1), "raw")
        .await
        .expect_err("2 MiB is over the 1 MiB limit");
    assert_eq!(err.rejection_code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("2097152 bytes"), "{err}");
    let fits = payload(MIB, 2);
    let ack = client.send_inline(2, fits.clone(), "raw").await.unwrap();
    assert_eq!(ack.checksum, checksum(&fits));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_a_worker_without_zero_copy_fails_its_precondition() {
    let worker = Worker::plain(Transport::Unix).await;
    let client = worker.client().await;
    let err = client
        .send_reference(&reference(9, 4096))
        .await
        .expect_err("no handler is installed");
    assert_eq!(
        err.rejection_code(),
        Some(Code::FailedPrecondition),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("zero-copy is not available on this worker"),
        "{err}"
    );
    worker.stop().await;
}

/// A handler that records what it was given and acknowledges a fixed checksum.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Reference>>,
}

impl ReferenceHandler for Recorder {
    fn handle(&self, reference: &Reference, _: Verification) -> Result<Ack, Refusal> {
        self.seen.lock().unwrap().push(reference.clone());
        if reference.length > reference.segment_len {
            return Err(Refusal::new(
                Code::OutOfRange,
                "length past the end of the segment",
            ));
        }
        Ok(Ack {
            transfer_id: reference.transfer_id,
            length: reference.length,
            checksum: 0xfeed,
            worker_ns: 0,
            worker_cpu_ns: 0,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_handler_gets_the_reference_and_its_answer_comes_back() {
    let recorder = Arc::new(Recorder::default());
    let service = service(ServiceConfig::default()).with_reference_handler(recorder.clone());
    let worker = Worker::start(Transport::Unix, service).await;
    let client = worker.client().await;
    let caps = client.negotiate().await.unwrap();
    assert!(caps.zero_copy && caps.max_segment_bytes > 0, "{caps:?}");

    let sent = reference(42, 8192);
    let ack = client.send_reference(&sent).await.unwrap();
    assert_eq!(
        (ack.transfer_id, ack.length, ack.checksum),
        (42, 8192, 0xfeed)
    );
    assert!(ack.worker_ns > 0, "the service times the handler: {ack:?}");
    assert_eq!(*recorder.seen.lock().unwrap(), [sent]);

    let mut past_end = reference(43, 8192);
    past_end.length = past_end.segment_len + 1;
    let err = client.send_reference(&past_end).await.unwrap_err();
    assert_eq!(err.rejection_code(), Some(Code::OutOfRange), "{err}");
    worker.stop().await;
}

/// A handler that blocks until released (or 30 s pass), like a worker that stalls.
struct Stall {
    release: Mutex<mpsc::Receiver<()>>,
}

impl ReferenceHandler for Stall {
    fn handle(&self, _: &Reference, _: Verification) -> Result<Ack, Refusal> {
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
        Err(Refusal::new(Code::Aborted, "released"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_gives_a_timeout_error_not_a_hang() {
    let (release, released) = mpsc::channel();
    let stall = Arc::new(Stall {
        release: Mutex::new(released),
    });
    let service = service(ServiceConfig::default()).with_reference_handler(stall);
    let worker = Worker::start(Transport::Unix, service).await;
    let client = worker
        .client_with(ClientConfig {
            call_timeout: Duration::from_millis(300),
            ..ClientConfig::default()
        })
        .await;
    let err = client.send_reference(&reference(1, 64)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                call: "send_reference",
                ..
            }
        ),
        "{err:?}"
    );
    drop(release);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_reports_the_transfer_service_serving() {
    for transport in TRANSPORTS {
        let worker = Worker::plain(transport).await;
        let client = worker.client().await;
        assert_eq!(client.health().await.unwrap(), WorkerHealth::Serving);
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_payload_arrives_intact_when_slow_tests_are_on() {
    if !slow_tests() {
        eprintln!("skipped: set PERFOPT_SLOW_TESTS=1 to send 1 GiB inline");
        return;
    }
    let worker = Worker::plain(Transport::Unix).await;
    let client = worker
        .client_with(ClientConfig {
            chunk_size: 4 * MIB,
            // Unoptimised test builds move about 100 MiB/s; leave room for a loaded machine.
            min_throughput: 8 * MIB as u64,
            ..ClientConfig::default()
        })
        .await;
    let sent = payload(1 << 30, 1);
    let ack = client.send_inline(1, sent.clone(), "raw").await.unwrap();
    assert_eq!((ack.length, ack.checksum), (1 << 30, checksum(&sent)));
    worker.stop().await;
}

fn reference(transfer_id: u64, length: u64) -> Reference {
    Reference {
        transfer_id,
        segment: SegmentId::Memfd {
            pid: std::process::id(),
            fd: 7,
        },
        segment_inode: 1234,
        segment_len: 1 << 20,
        offset: 0,
        length,
        format: "raw".to_owned(),
        expires_unix_ms: u64::MAX,
        token: [0xab; 32],
    }
}
