//! A real worker on a Unix socket, with a bare client free to break every rule.

use std::sync::Arc;
use std::time::Duration;

use perf_core::SegmentId;
use perf_transport::grpc::{ClientConfig, ServiceConfig, TransferService, checksum};
use perf_transport::reader::now_unix_ms;
use perf_transport::{Reference, ReferenceReader, Secret};
use proptest::test_runner::TestCaseError;
use tonic::Status;
use tonic::transport::Channel;

use crate::fail;
use crate::fixture::{CountingShm, Fixture, SECRET, SEGMENT_LEN};
use crate::grpc_support::wire::transfer_client::TransferClient;
use crate::grpc_support::{Transport, Worker, payload};

/// Largest inline payload of the fuzzed service: small, so any announced length is cheap.
pub(crate) const MAX_INLINE: u64 = 256 << 10;
/// Longest any fuzzed call may take before it counts as a hang.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// A worker whose reader counts its opens, served on a Unix socket, and a bare client to it.
pub(crate) struct Served {
    worker: Worker,
    pub(crate) shm: Arc<CountingShm>,
    pub(crate) client: TransferClient<Channel>,
}

pub(crate) async fn serve() -> Served {
    let shm = Arc::new(CountingShm::default());
    let reader = ReferenceReader::new(
        shm.clone(),
        Secret::from_bytes(SECRET),
        Some(std::process::id()),
    );
    let config = ServiceConfig {
        max_inline_bytes: MAX_INLINE,
        max_inflight_inline_bytes: 4 * MAX_INLINE,
        max_retained_buffer_bytes: 4 * MAX_INLINE,
        // Longer than a test waits, so a stuck call shows as a hang, not as the worker's limit.
        max_call_duration: 2 * CALL_LIMIT,
        ..ServiceConfig::default()
    };
    let service = TransferService::new(config)
        .expect("a valid service configuration")
        .with_reference_handler(Arc::new(reader));
    let worker = Worker::start(Transport::Unix, service).await;
    let path = worker
        .endpoint
        .unix_path()
        .expect("a unix endpoint")
        .to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("the bare client connects to the worker's socket");
    // Free to send what a well-behaved host never would, messages over the limit included.
    let client = TransferClient::new(channel).max_encoding_message_size(16 << 20);
    Served {
        worker,
        shm,
        client,
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The answer to a call, which must come within [`CALL_LIMIT`].
pub(crate) async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<Result<T, Status>, TestCaseError> {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Err(_) => Err(fail(format!("the call did not end within {CALL_LIMIT:?}"))),
        Ok(answer) => Ok(answer.map(tonic::Response::into_inner)),
    }
}

/// After the fuzzed calls, the worker still takes a normal inline transfer and a normal
/// reference, and stops cleanly.
pub(crate) async fn still_serves(served: Served, fixture: &Fixture) {
    let client = served.worker.client_with(ClientConfig::default()).await;
    let data = payload(100_000, 5);
    let ack = client
        .send_inline(1, data.clone(), "raw")
        .await
        .expect("a normal inline transfer after the fuzzed ones");
    assert_eq!(ack.checksum, checksum(&data));
    let mut reference = Reference {
        transfer_id: 2,
        segment: SegmentId::Memfd {
            pid: fixture.pid,
            fd: fixture.fd,
        },
        segment_inode: fixture.inode(),
        segment_len: SEGMENT_LEN as u64,
        offset: 10,
        length: 1000,
        format: "raw".to_owned(),
        expires_unix_ms: now_unix_ms() + 60_000,
        token: [0; 32],
    };
    reference.sign(&Secret::from_bytes(SECRET));
    let ack = client
        .send_reference(&reference)
        .await
        .expect("a normal reference after the fuzzed ones");
    assert_eq!(ack.checksum, checksum(&fixture.bytes()[10..1010]));
    served.worker.stop().await;
}
