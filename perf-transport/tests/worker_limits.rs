//! A worker against peers that hold what it lends: inline streams that stall while holding room,
//! segments released or truncated while mapped, and named segments of another process.

#![cfg(target_os = "linux")]

mod grpc_support;

use std::sync::Arc;
use std::time::Duration;

use perf_core::{PlatformShm, SegmentId, ShmSegment};
use perf_platform::{MemfdShm, NamedShm, NamedShmConfig};
use perf_transport::grpc::{Endpoint, ServiceConfig, TransferService, checksum};
use perf_transport::reader::now_unix_ms;
use perf_transport::{
    MappingLimits, ReadError, Reference, ReferenceReader, Secret, SegmentPool, SegmentPoolConfig,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use grpc_support::wire::{InlineChunk, InlineHeader};
use grpc_support::{Transport, Worker, payload, raw_client};

const MIB: usize = 1 << 20;

/// Starts an inline transfer that announces `total_len` bytes, sends one chunk of `first`
/// bytes and then nothing; the returned sender keeps the stream open. The call runs on its own
/// task, whose result is its status.
async fn stalled_stream(
    worker: &Worker,
    total_len: usize,
    first: usize,
) -> (
    mpsc::Sender<InlineChunk>,
    tokio::task::JoinHandle<Result<(), tonic::Status>>,
) {
    let mut raw = raw_client(worker).await;
    let (sender, receiver) = mpsc::channel(4);
    sender
        .send(InlineChunk {
            header: Some(InlineHeader {
                transfer_id: 99,
                total_len: total_len as u64,
                format: "raw".to_owned(),
            }),
            data: payload(first, 3),
        })
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        raw.send_inline(ReceiverStream::new(receiver))
            .await
            .map(|_| ())
    });
    // Give the worker time to take the stream's room.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (sender, call)
}

fn limited(stream_idle_timeout: Duration, stall_timeout: Duration) -> TransferService {
    TransferService::new(ServiceConfig {
        max_inline_bytes: 8 * MIB as u64,
        max_inflight_inline_bytes: 8 * MIB as u64,
        stream_idle_timeout,
        stall_timeout,
        ..ServiceConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_inline_stream_gives_its_room_back_after_the_idle_timeout() {
    let worker = Worker::start(
        Transport::Tcp,
        limited(Duration::from_secs(1), Duration::from_millis(500)),
    )
    .await;
    let (_keep_open, call) = stalled_stream(&worker, 8 * MIB, MIB).await;
    let status = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the stalled call ended")
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("stream_idle_timeout"),
        "{status:?}"
    );
    // Its room is back: a transfer needing the whole budget goes through.
    let data = payload(8 * MIB, 7);
    let ack = worker
        .client()
        .await
        .send_inline(1, data.clone(), "raw")
        .await
        .unwrap();
    assert_eq!(ack.checksum, checksum(&data));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_never_block_a_transfer_that_sends() {
    // The idle timeout is far longer than the test: only preemption can free the room.
    let worker = Worker::start(
        Transport::Tcp,
        limited(Duration::from_secs(120), Duration::from_millis(500)),
    )
    .await;
    let (_first_open, first) = stalled_stream(&worker, 4 * MIB, MIB).await;
    let (_second_open, second) = stalled_stream(&worker, 4 * MIB, MIB).await;

    // The first needs the room of one stalled stream, the second the whole budget.
    let client = worker.client().await;
    for (id, len) in [(2, 4 * MIB), (3, 8 * MIB)] {
        let data = payload(len, id);
        let ack = client
            .send_inline(id, data.clone(), "raw")
            .await
            .expect("a transfer that sends is not held up by stalled ones");
        assert_eq!(ack.checksum, checksum(&data));
    }
    for call in [first, second] {
        let status = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("the stalled call ended")
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert!(status.message().contains("preempted"), "{status:?}");
    }
    worker.stop().await;
}

fn signed(secret: &Secret, segment: &dyn ShmSegment, length: usize) -> Reference {
    let mut reference = Reference {
        transfer_id: 5,
        segment: segment.id().clone(),
        segment_inode: segment.inode(),
        segment_len: segment.len() as u64,
        offset: 0,
        length: length as u64,
        format: "raw".to_owned(),
        expires_unix_ms: now_unix_ms() + 60_000,
        token: [0; 32],
    };
    reference.sign(secret);
    reference
}

fn filled(shm: &dyn PlatformShm, len: usize, seed: u64) -> Box<dyn ShmSegment> {
    let mut segment = shm.create(len).unwrap();
    segment.as_mut_slice().copy_from_slice(&payload(len, seed));
    segment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_worker_unmaps_segments_their_host_released() {
    let secret = Secret::generate().unwrap();
    let shm = MemfdShm::default();
    let reader = Arc::new(ReferenceReader::new(
        Arc::new(MemfdShm::default()),
        secret.clone(),
        Some(std::process::id()),
    ));
    let service = TransferService::new(ServiceConfig::default())
        .unwrap()
        .with_reference_handler(reader.clone());
    let worker = Worker::start(Transport::Unix, service).await;
    let client = worker.client().await;

    let kept = filled(&shm, MIB, 1);
    let mut released = Vec::new();
    for seed in 2..6 {
        released.push(filled(&shm, MIB, seed));
    }
    for segment in released.iter().chain([&kept]) {
        let ack = client
            .send_reference(&signed(&secret, segment.as_ref(), MIB))
            .await
            .unwrap();
        assert_eq!(ack.checksum, checksum(segment.as_slice()));
    }
    assert_eq!(reader.open_mappings(), 5);
    drop(released);

    let mut open = reader.open_mappings();
    for _ in 0..100 {
        if open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = reader.open_mappings();
    }
    assert_eq!(
        open, 1,
        "mappings of released segments are still open after 10 s"
    );
    assert_eq!(
        reader.mapped_bytes(),
        MIB as u64,
        "the kept one stays mapped"
    );
    worker.stop().await;
}

#[test]
fn the_mapping_cache_stays_within_its_bounds() {
    let secret = Secret::generate().unwrap();
    let shm = MemfdShm::default();
    let limits = MappingLimits {
        max_mappings: 2,
        max_bytes: 3 * MIB as u64,
        ..MappingLimits::default()
    };
    let reader =
        ReferenceReader::with_limits(Arc::new(MemfdShm::default()), secret.clone(), None, limits);
    let segments: Vec<_> = (0..4).map(|seed| filled(&shm, MIB, seed)).collect();
    for segment in &segments {
        reader
            .read(&signed(&secret, segment.as_ref(), MIB))
            .unwrap();
        assert!(reader.open_mappings() <= 2, "{}", reader.open_mappings());
    }
    let big = filled(&shm, 2 * MIB, 9);
    reader
        .read(&signed(&secret, big.as_ref(), 2 * MIB))
        .unwrap();
    assert!(reader.mapped_bytes() <= 3 * MIB as u64);
    assert_eq!(reader.open_mappings(), 2, "1 MiB + 2 MiB fit in 3 MiB");
    let huge = filled(&shm, 4 * MIB, 10);
    let out = reader
        .read(&signed(&secret, huge.as_ref(), 4 * MIB))
        .unwrap();
    assert_eq!(out.checksum, checksum(huge.as_slice()));
    assert!(
        reader.mapped_bytes() <= 3 * MIB as u64,
        "a mapping over the byte bound was kept"
    );
}

/// A named backend on a fresh directory, so the test needs no /dev/shm of its own.
fn named(dir: &tempfile::TempDir) -> NamedShm {
    NamedShm::new(NamedShmConfig {
        dir: dir.path().to_owned(),
        ..NamedShmConfig::default()
    })
    .unwrap()
}

#[test]
fn a_named_segment_must_belong_to_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let shm = named(&dir);
    let secret = Secret::generate().unwrap();
    let segment = filled(&shm, 64 << 10, 1);
    let reference = signed(&secret, segment.as_ref(), 64 << 10);
    let reader = |peer| ReferenceReader::new(Arc::new(named(&dir)), secret.clone(), peer);

    let me = std::process::id();
    assert!(reader(Some(me)).read(&reference).is_ok(), "the owner's own");
    assert!(
        reader(None).read(&reference).is_ok(),
        "no peer, no owner check"
    );
    let err = reader(Some(me + 1)).read(&reference).unwrap_err();
    assert!(
        matches!(&err, ReadError::ForeignSegment { peer, .. } if *peer == me + 1),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("process {me}")), "{err}");

    // A segment renamed to claim another owner is refused too, and so is a name recording none.
    let SegmentId::Named(name) = segment.id() else {
        unreachable!("a named backend makes named segments");
    };
    let parts: Vec<&str> = name.trim_start_matches('/').split('-').collect();
    let forged = format!(
        "{}-{}-{}-{}-{}",
        parts[0],
        parts[1],
        me + 1,
        parts[3],
        parts[4]
    );
    std::fs::hard_link(dir.path().join(&name[1..]), dir.path().join(&forged)).unwrap();
    let plain = "perfopt-plain";
    std::fs::hard_link(dir.path().join(&name[1..]), dir.path().join(plain)).unwrap();
    for other in [forged, plain.to_owned()] {
        let mut moved = reference.clone();
        moved.segment = SegmentId::Named(format!("/{other}"));
        moved.sign(&secret);
        let err = reader(Some(me)).read(&moved).unwrap_err();
        assert!(
            matches!(err, ReadError::ForeignSegment { .. }),
            "{other}: {err}"
        );
    }
}

#[test]
fn a_truncated_named_segment_is_refused_instead_of_faulting() {
    let dir = tempfile::tempdir().unwrap();
    let shm = named(&dir);
    let secret = Secret::generate().unwrap();
    let segment = filled(&shm, MIB, 1);
    let reference = signed(&secret, segment.as_ref(), MIB);
    let reader = ReferenceReader::new(Arc::new(named(&dir)), secret, Some(std::process::id()));
    reader.read(&reference).unwrap();
    assert_eq!(reader.open_mappings(), 1);

    let SegmentId::Named(name) = segment.id() else {
        unreachable!("a named backend makes named segments");
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(&name[1..]))
        .unwrap();
    file.set_len(4096).unwrap();
    // Reading the mapping past 4 KiB now would raise SIGBUS and kill this process.
    let err = reader.read(&reference).unwrap_err();
    assert!(
        matches!(
            &err,
            ReadError::Shm(perf_core::ShmError::Resized { found: 4096, .. })
        ),
        "{err}"
    );
}

#[test]
fn a_pool_does_not_reuse_a_named_segment_someone_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let pool = SegmentPool::new(Arc::new(named(&dir)), SegmentPoolConfig::default()).unwrap();
    let lease = pool.acquire(MIB).unwrap();
    let SegmentId::Named(name) = lease.id().clone() else {
        unreachable!("a named backend makes named segments");
    };
    drop(lease);
    let path = dir.path().join(&name[1..]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();

    let mut again = pool.acquire(MIB).unwrap();
    assert_ne!(
        again.id(),
        &SegmentId::Named(name),
        "the truncated segment was lent again"
    );
    // Writing the whole lease would raise SIGBUS on the truncated one.
    again.as_mut_slice().fill(7);
    let stats = pool.stats();
    assert_eq!((stats.damaged, stats.reused), (1, 0), "{stats:?}");
    assert!(!path.exists(), "the damaged segment's name was not removed");
}

#[test]
fn a_payload_read_while_written_notices_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let shm = named(&dir);
    let secret = Secret::generate().unwrap();
    let segment = filled(&shm, MIB, 4);
    let reference = signed(&secret, segment.as_ref(), MIB);
    let reader = ReferenceReader::new(Arc::new(named(&dir)), secret, None);
    let mut read = reader.begin(&reference).unwrap();
    read.advance(4096).unwrap();
    let SegmentId::Named(name) = segment.id() else {
        unreachable!("a named backend makes named segments");
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(&name[1..]))
        .unwrap()
        .set_len(8192)
        .unwrap();
    let err = read.advance(MIB as u64).unwrap_err();
    assert!(err.to_string().contains("resized"), "{err}");
}

/// Opens a TCP connection to `worker` and speaks just enough HTTP/2 to be established: the
/// preface and an empty SETTINGS frame; then it neither reads nor answers pings.
async fn silent_http2_peer(worker: &Worker) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let Endpoint::Tcp { host, port } = &worker.endpoint else {
        panic!("a tcp worker, got {}", worker.endpoint);
    };
    let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port))
        .await
        .unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // A SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    stream
}

/// Reads and discards until the worker closes the connection; false if it is still open at
/// the end of `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    };
    tokio::time::timeout(wait, drain).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let service = TransferService::new(ServiceConfig {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(200),
        ..ServiceConfig::default()
    })
    .unwrap();
    let worker = Worker::start(Transport::Tcp, service).await;
    let mut peer = silent_http2_peer(&worker).await;
    assert!(
        closed_within(&mut peer, Duration::from_secs(20)).await,
        "a peer that never acknowledged a ping is still connected after 20 s"
    );
    // A live host answers the pings and keeps its connection across them.
    let client = worker.client().await;
    client.negotiate().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.negotiate().await.unwrap();
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keepalive_probes_a_silent_peer_would_stay() {
    // The same peer against a worker probing rarely: still connected after the wait above, so
    // the disconnection there is the probes' doing.
    let worker = Worker::start(
        Transport::Tcp,
        TransferService::new(ServiceConfig::default()).unwrap(),
    )
    .await;
    let mut peer = silent_http2_peer(&worker).await;
    assert!(!closed_within(&mut peer, Duration::from_secs(2)).await);
    drop(peer);
    worker.stop().await;
}
