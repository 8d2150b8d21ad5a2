//! A worker served in this test process on a real Unix socket: it maps references with a fresh
//! secret, runs a handler when given one (reply segments from a pool of its own), and stops
//! when dropped.

use std::sync::Arc;

use perfopt::platform::MemfdShm;
use perfopt::transport::grpc::{Endpoint, Listener, ServiceConfig, TransferService};
use perfopt::transport::worker::Handler;
use perfopt::transport::{ReferenceReader, Secret, SegmentPool, SegmentPoolConfig};

pub(crate) struct InProcessWorker {
    pub(crate) endpoint: Endpoint,
    pub(crate) secret: Secret,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl InProcessWorker {
    /// Starts serving on the current runtime.
    pub(crate) async fn start(handler: Option<Arc<dyn Handler>>) -> InProcessWorker {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::Unix(dir.path().join("w.sock"));
        let secret = Secret::generate().unwrap();
        let reader = ReferenceReader::new(
            Arc::new(MemfdShm::default()),
            secret.clone(),
            Some(std::process::id()),
        );
        let mut service = TransferService::new(ServiceConfig::default())
            .unwrap()
            .with_reference_handler(Arc::new(reader));
        if let Some(handler) = handler {
            let segments =
                SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default())
                    .unwrap();
            service = service.with_handler(handler, Some((segments, secret.clone())));
        }
        let listener = Listener::bind(&endpoint).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(listener.serve(service, async {
            let _ = stopped.await;
        }));
        InProcessWorker {
            endpoint,
            secret,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
