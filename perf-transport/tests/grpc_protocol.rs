//! The gRPC transport against peers that break the rules: malformed and oversized streams, calls
//! without a deadline, a worker killed mid-call, bad endpoints, and socket files in the way.

#![cfg(unix)]

mod grpc_support;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use perf_core::{SegmentId, Verification};
use perf_transport::Reference;
use perf_transport::grpc::{
    Ack, ClientConfig, ClientError, Endpoint, EndpointError, Listener, MAX_CHUNK_SIZE,
    MAX_UNIX_PATH_LEN, ReferenceHandler, Refusal, ServeError, ServiceConfig, WorkerClient,
};
use tonic::Code;

use grpc_support::wire::{Capabilities, InlineChunk, InlineHeader};
use grpc_support::{Transport, Worker, raw_client, service};

/// A reference of the right shape, which reaches the worker's handler.
fn any_reference() -> Reference {
    Reference {
        transfer_id: 1,
        segment: SegmentId::Memfd {
            pid: std::process::id(),
            fd: 3,
        },
        segment_inode: 1,
        segment_len: 4096,
        offset: 0,
        length: 64,
        format: "raw".to_owned(),
        expires_unix_ms: u64::MAX,
        token: [0; 32],
    }
}

fn header(total_len: u64) -> Option<InlineHeader> {
    Some(InlineHeader {
        transfer_id: 5,
        total_len,
        format: "raw".to_owned(),
    })
}

fn chunk(header: Option<InlineHeader>, data: &'static [u8]) -> InlineChunk {
    InlineChunk {
        header,
        data: Bytes::from_static(data),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_speaking_another_protocol_version_is_refused() {
    let worker = Worker::plain(Transport::Tcp).await;
    let mut raw = raw_client(&worker).await;
    let status = raw
        .negotiate(Capabilities {
            protocol_version: 2,
            ..Capabilities::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("expected protocol version 1, got 2"),
        "{status:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inline_streams_are_refused_naming_what_came() {
    let worker = Worker::plain(Transport::Tcp).await;
    let mut raw = raw_client(&worker).await;
    let cases: [(&str, Vec<InlineChunk>, &str); 5] = [
        ("empty stream", vec![], "got an empty stream"),
        (
            "no header",
            vec![chunk(None, b"abcd")],
            "a chunk of 4 bytes without one",
        ),
        (
            "overflow",
            vec![chunk(header(6), b"abcd"), chunk(None, b"efgh")],
            "chunk 1 of 4 bytes at offset 4 overflows the announced total_len of 6 bytes",
        ),
        (
            "short",
            vec![chunk(header(10), b"abcd")],
            "stream ended after 4 of the announced 10 bytes",
        ),
        (
            "second header",
            vec![chunk(header(8), b"abcd"), chunk(header(8), b"efgh")],
            "got another in chunk 1",
        ),
    ];
    for (name, chunks, expected) in cases {
        let status = raw
            .send_inline(tokio_stream::iter(chunks))
            .await
            .expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().contains(expected), "{name}: {status:?}");
    }
    let fine = raw
        .send_inline(tokio_stream::iter([chunk(header(4), b"abcd")]))
        .await
        .expect("a well-formed stream still works after the refusals");
    assert_eq!(fine.into_inner().length, 4);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_message_over_the_size_limit_is_refused() {
    let worker = Worker::plain(Transport::Tcp).await;
    let mut raw = raw_client(&worker).await;
    let big = InlineChunk {
        header: header(5 << 20),
        data: Bytes::from(vec![7u8; 5 << 20]),
    };
    assert!(big.data.len() > MAX_CHUNK_SIZE);
    let status = raw
        .send_inline(tokio_stream::iter([big]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_deadline_is_ended_by_the_worker_call_limit() {
    let config = ServiceConfig {
        max_call_duration: Duration::from_millis(300),
        ..ServiceConfig::default()
    };
    let worker = Worker::start(Transport::Tcp, service(config)).await;
    let mut raw = raw_client(&worker).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(chunk(header(8), b"abcd")).await.unwrap();
    // The sender stays alive: the stream neither ends nor sends the rest.
    let call = raw.send_inline(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let status = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the worker ends the call itself")
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    drop(sender);
    worker.stop().await;
}

/// A handler that blocks until released (or 30 s pass).
struct Stall(std::sync::Mutex<mpsc::Receiver<()>>);

impl ReferenceHandler for Stall {
    fn handle(&self, _: &Reference, _: Verification) -> Result<Ack, Refusal> {
        let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(30));
        Err(Refusal::new(perf_transport::Code::Aborted, "released"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_call_limit_reaches_the_host_as_a_timeout() {
    let (release, released) = mpsc::channel();
    let config = ServiceConfig {
        max_call_duration: Duration::from_millis(200),
        ..ServiceConfig::default()
    };
    let service =
        service(config).with_reference_handler(Arc::new(Stall(std::sync::Mutex::new(released))));
    let worker = Worker::start(Transport::Unix, service).await;
    let client = worker.client().await;
    let err = client.send_reference(&any_reference()).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    drop(release);
    worker.stop().await;
}

#[test]
fn endpoints_parse_in_both_forms_and_print_back() {
    let cases = [
        ("unix:/run/perfopt/w.sock", "unix:/run/perfopt/w.sock"),
        ("tcp:10.0.0.2:7000", "tcp:10.0.0.2:7000"),
        ("tcp:worker-1.example:80", "tcp:worker-1.example:80"),
        ("tcp:7000", "tcp:127.0.0.1:7000"),
        ("tcp::7000", "tcp:127.0.0.1:7000"),
        ("tcp:[::1]:7000", "tcp:[::1]:7000"),
    ];
    for (text, printed) in cases {
        let endpoint = Endpoint::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(endpoint.to_string(), printed);
        assert_eq!(printed.parse::<Endpoint>().unwrap(), endpoint);
    }
    assert_eq!(
        Endpoint::parse("tcp:[::1]:9").unwrap(),
        Endpoint::Tcp {
            host: "::1".to_owned(),
            port: 9
        }
    );
}

#[test]
fn bad_endpoints_are_refused_saying_what_came() {
    let long_path = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH_LEN));
    let cases = [
        ("", "has no known scheme"),
        ("http://host:80", "`http://host:80` has no known scheme"),
        ("unix:", "empty path"),
        (
            long_path.as_str(),
            "is 108 bytes long, expected at most 107",
        ),
        ("unix:/tmp/a\0b", "NUL"),
        ("tcp:", "has no port"),
        ("tcp:host:", "has no port"),
        (
            "tcp:host:65536",
            "port `65536` is not a number from 0 to 65535",
        ),
        ("tcp:host:http", "port `http`"),
        ("tcp:::1:80", "host `::1` is not valid"),
        ("tcp:[10.0.0.1]:80", "host `[10.0.0.1]` is not valid"),
        ("tcp:bad_host!:80", "host `bad_host!` is not valid"),
    ];
    for (text, expected) in cases {
        let err = Endpoint::parse(text).expect_err(text);
        assert!(err.to_string().contains(expected), "{text:?}: {err}");
    }
    let huge = "x".repeat(5000);
    assert!(matches!(
        Endpoint::parse(&huge),
        Err(EndpointError::TooLong { len: 5000, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_file_is_private_and_removed_after_serving() {
    let worker = Worker::plain(Transport::Unix).await;
    let path = worker.endpoint.unix_path().unwrap().to_owned();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let second = Listener::bind(&worker.endpoint).await.unwrap_err();
    assert!(matches!(second, ServeError::InUse { .. }), "{second:?}");
    assert!(path.exists(), "a live worker's socket is never removed");

    worker.stop().await;
    assert!(!path.exists(), "the socket file is removed after serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_replaced_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists(), "a dropped listener leaves its socket file");
    let listener = Listener::bind(&Endpoint::Unix(stale.clone()))
        .await
        .unwrap();
    drop(listener);
    assert!(
        !stale.exists(),
        "dropping an unused listener removes its socket"
    );

    let regular = dir.path().join("data.txt");
    std::fs::write(&regular, b"keep me").unwrap();
    let err = Listener::bind(&Endpoint::Unix(regular.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::NotASocket { .. }), "{err:?}");
    assert!(
        err.to_string().contains("a file that is not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_or_with_a_bad_config_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Endpoint::Unix(dir.path().join("nobody.sock"));
    let err = WorkerClient::connect(&missing, ClientConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody.sock"), "{err}");

    let closed_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let tcp = Endpoint::parse(&format!("tcp:127.0.0.1:{closed_port}")).unwrap();
    let err = WorkerClient::connect(&tcp, ClientConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");

    let tiny_chunks = ClientConfig {
        chunk_size: 1,
        ..ClientConfig::default()
    };
    let err = WorkerClient::connect(&missing, tiny_chunks)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}

/// Set in a child copy of this test binary to make it a worker serving on that socket path.
const CHILD_WORKER_ENV: &str = "PERFOPT_GRPC_TEST_WORKER";

/// A handler that never answers within a test's lifetime, so a call is surely in flight when
/// its worker is killed.
struct Hang;

impl ReferenceHandler for Hang {
    fn handle(&self, _: &Reference, _: Verification) -> Result<Ack, Refusal> {
        std::thread::sleep(Duration::from_secs(600));
        Err(Refusal::new(perf_transport::Code::Aborted, "woke up"))
    }
}

/// Serves a worker until killed when run as a child by
/// `a_worker_killed_mid_call_gives_unavailable_and_a_new_worker_takes_over`; passes at once
/// otherwise.
#[test]
fn child_worker_process() {
    let Some(path) = std::env::var_os(CHILD_WORKER_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let endpoint = Endpoint::Unix(path.into());
        let service = service(ServiceConfig::default()).with_reference_handler(Arc::new(Hang));
        perf_transport::grpc::serve(&endpoint, service, std::future::pending())
            .await
            .unwrap();
    });
}

fn spawn_child_worker(path: &std::path::Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker_process", "--nocapture"])
        .env(CHILD_WORKER_ENV, path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the test binary starts as a worker")
}

async fn connect_when_up(endpoint: &Endpoint) -> WorkerClient {
    for _ in 0..200 {
        if let Ok(client) = WorkerClient::connect(endpoint, ClientConfig::default()).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the child worker did not come up at {endpoint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_call_gives_unavailable_and_a_new_worker_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("child.sock"));
    let mut child = spawn_child_worker(endpoint.unix_path().unwrap());
    let client = connect_when_up(&endpoint).await;
    assert_eq!(client.negotiate().await.unwrap().pid, child.id());

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.send_reference(&any_reference()).await }
    });
    // Whether or not the call has reached the handler yet, it is in flight or queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let err = call.await.unwrap().expect_err("the worker died mid-call");
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    let err = client.negotiate().await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");

    // The dead worker's socket file is stale; a new worker replaces it and takes transfers.
    let mut next = spawn_child_worker(endpoint.unix_path().unwrap());
    let client = connect_when_up(&endpoint).await;
    let small = grpc_support::payload(4096, 12);
    let ack = client.send_inline(2, small.clone(), "raw").await.unwrap();
    assert_eq!(ack.checksum, perf_transport::grpc::checksum(&small));
    next.kill().unwrap();
    next.wait().unwrap();
}
