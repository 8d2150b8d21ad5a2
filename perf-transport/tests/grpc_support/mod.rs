//! Shared fixtures of the gRPC tests: an in-process worker on a real socket, and payloads.

#![allow(dead_code)]

use std::time::Duration;

use self::wire::transfer_client::TransferClient;
use bytes::Bytes;
use perf_transport::grpc::{
    ClientConfig, Endpoint, Listener, ServeError, ServiceConfig, TransferService, WorkerClient,
};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[path = "../wire/mod.rs"]
pub(crate) mod wire;

/// The kind of socket a test worker listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A Unix domain socket in a fresh temporary directory.
    Unix,
    /// TCP on 127.0.0.1, on a port the system picks.
    Tcp,
}

/// Both transports, for tests that must hold on each.
pub(crate) const TRANSPORTS: [Transport; 2] = [Transport::Unix, Transport::Tcp];

/// A worker served in this process on a real socket until [`Worker::stop`].
pub(crate) struct Worker {
    pub(crate) endpoint: Endpoint,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    /// Keeps the socket's directory alive; `None` for TCP.
    pub(crate) dir: Option<TempDir>,
}

impl Worker {
    /// Serves `service` on a fresh socket of the `transport` kind.
    pub(crate) async fn start(transport: Transport, service: TransferService) -> Worker {
        let (endpoint, dir) = match transport {
            Transport::Unix => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                (Endpoint::Unix(dir.path().join("worker.sock")), Some(dir))
            }
            Transport::Tcp => (Endpoint::parse("tcp:127.0.0.1:0").unwrap(), None),
        };
        let listener = Listener::bind(&endpoint).await.expect("the worker binds");
        let endpoint = listener.local_endpoint().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.serve(service, async {
            let _ = stopped.await;
        }));
        Worker {
            endpoint,
            shutdown: Some(shutdown),
            task,
            dir,
        }
    }

    /// Serves a service with default limits and no reference handler.
    pub(crate) async fn plain(transport: Transport) -> Worker {
        Worker::start(transport, service(ServiceConfig::default())).await
    }

    /// A client connected with the default configuration.
    pub(crate) async fn client(&self) -> WorkerClient {
        self.client_with(ClientConfig::default()).await
    }

    /// A client connected with `config`.
    pub(crate) async fn client_with(&self, config: ClientConfig) -> WorkerClient {
        WorkerClient::connect(&self.endpoint, config)
            .await
            .expect("the client connects to the test worker")
    }

    /// Asks the server to shut down and waits until it has, asserting it stopped cleanly.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let served = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the worker stops within 10 s of its shutdown signal")
            .expect("the worker task did not panic");
        served.expect("the worker served without error");
    }
}

/// A service with `config` and no reference handler.
pub(crate) fn service(config: ServiceConfig) -> TransferService {
    TransferService::new(config).expect("a valid service configuration")
}

/// `len` bytes that are not a repeating pattern, so a misplaced chunk changes the checksum.
pub(crate) fn payload(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Whether the slow tests were asked for.
pub(crate) fn slow_tests() -> bool {
    std::env::var("PERFOPT_SLOW_TESTS").is_ok_and(|it| it == "1")
}

/// A bare generated client over TCP, free to send what [`WorkerClient`] never would.
pub(crate) async fn raw_client(worker: &Worker) -> TransferClient<Channel> {
    let Endpoint::Tcp { host, port } = &worker.endpoint else {
        panic!("raw clients use tcp, got {}", worker.endpoint);
    };
    TransferClient::connect(format!("http://{host}:{port}"))
        .await
        .expect("the raw client connects")
        .max_encoding_message_size(16 << 20)
}
