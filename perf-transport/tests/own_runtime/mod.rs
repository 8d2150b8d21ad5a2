//! An in-process worker served on a runtime of its own, so that killing it drops its listener
//! and every connection at once, as a process exit would; and a sink that keeps every record.

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::Duration;

use perf_core::{MetricsSink, TransferMetrics};
use perf_transport::grpc::{Endpoint, Listener, TransferService};
use tokio::sync::oneshot;

/// `service` on a Unix socket in a fresh temporary directory, until killed or dropped.
pub(crate) struct Served {
    pub(crate) endpoint: Endpoint,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Binds the socket and serves `service` on `threads` threads of its own.
    pub(crate) async fn start(service: TransferService, threads: usize) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::Unix(dir.path().join("w.sock"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        let (bound, listening) = oneshot::channel();
        let at = endpoint.clone();
        runtime.spawn(async move {
            let listener = Listener::bind(&at).await.unwrap();
            let _ = bound.send(());
            let _ = listener.serve(service, std::future::pending()).await;
        });
        listening.await.expect("the test worker binds its socket");
        Served {
            endpoint,
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// Stops serving: open connections break, new ones are refused.
    pub(crate) async fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Waits until the runtime's threads have dropped every task, and with them every
            // socket.
            tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        }
        if let Endpoint::Unix(path) = &self.endpoint {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Keeps every record it is sent.
#[derive(Default)]
pub(crate) struct Records(pub(crate) Mutex<Vec<TransferMetrics>>);

impl Records {
    /// Every record so far, in order.
    pub(crate) fn all(&self) -> Vec<TransferMetrics> {
        self.0.lock().unwrap().clone()
    }
}

impl MetricsSink for Records {
    fn record(&self, metrics: &TransferMetrics) {
        self.0.lock().unwrap().push(*metrics);
    }
}
