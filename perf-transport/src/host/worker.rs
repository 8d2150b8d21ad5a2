//! The worker side of the spawn contract: read the arguments a host adds, serve the transfer
//! protocol, say where, and stop when the host is gone.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use perf_platform::{MemfdShm, NamedShm, NamedShmConfig, SystemShm};

use crate::grpc::{Endpoint, Listener, ServeError, ServiceConfig, TransferService};
use crate::pool::{SegmentPool, SegmentPoolConfig};
use crate::reader::{MappingLimits, ReferenceReader};
use crate::reference::Secret;
use crate::worker::Handler;

/// How often a worker looks whether its host still runs.
const PEER_CHECK: Duration = Duration::from_millis(500);

/// What a host told the worker it spawned (see [`WorkerCommand`](super::WorkerCommand)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnedWorker {
    /// Where to listen.
    pub listen: Endpoint,
    /// The host: segments must belong to it, and the worker stops when it is gone.
    pub peer_pid: Option<u32>,
    /// The secret that signs references; without it the worker takes gRPC transfers only.
    pub secret_file: Option<PathBuf>,
}

/// Why a spawned worker could not serve.
#[derive(Debug, thiserror::Error)]
pub enum SpawnedWorkerError {
    /// The arguments do not follow the contract.
    #[error("{0}")]
    Args(String),
    /// The secret file could not be read.
    #[error("--secret-file: {0}")]
    Secret(String),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl SpawnedWorker {
    /// Reads `--listen ENDPOINT`, `--peer-pid PID` and `--secret-file PATH` from `args` (the
    /// arguments after the program's own).
    pub fn from_args(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<SpawnedWorker, SpawnedWorkerError> {
        let bad = |m: String| SpawnedWorkerError::Args(m);
        let (mut listen, mut peer_pid, mut secret_file) = (None, None, None);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| bad(format!("{} has no value", flag.to_string_lossy())))?;
            let text = || {
                value
                    .to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{} is not UTF-8", flag.to_string_lossy())))
            };
            match flag.to_str() {
                Some("--listen") => {
                    listen =
                        Some(Endpoint::parse(&text()?).map_err(|e| bad(format!("--listen: {e}")))?);
                }
                Some("--peer-pid") => {
                    let t = text()?;
                    peer_pid = Some(
                        t.parse::<u32>()
                            .map_err(|_| bad(format!("--peer-pid {t}: expected a process id")))?,
                    );
                }
                Some("--secret-file") => secret_file = Some(PathBuf::from(&value)),
                _ => {
                    return Err(bad(format!(
                        "unexpected argument {}, expected --listen, --peer-pid or --secret-file",
                        flag.to_string_lossy()
                    )));
                }
            }
        }
        Ok(SpawnedWorker {
            listen: listen.ok_or_else(|| bad("--listen is missing".into()))?,
            peer_pid,
            secret_file,
        })
    }

    /// The transfer service under `config`, mapping references checked with the secret when
    /// there is one.
    pub fn service(&self, config: ServiceConfig) -> Result<TransferService, SpawnedWorkerError> {
        let limits = MappingLimits {
            max_segment_bytes: config.max_segment_bytes,
            ..MappingLimits::default()
        };
        let mut service =
            TransferService::new(config).map_err(|e| SpawnedWorkerError::Args(e.to_string()))?;
        if let Some(path) = &self.secret_file {
            let secret =
                Secret::read_file(path).map_err(|e| SpawnedWorkerError::Secret(e.to_string()))?;
            let named = NamedShm::new(NamedShmConfig::default())
                .map_err(|e| SpawnedWorkerError::Args(e.to_string()))?;
            let shm = SystemShm::new(MemfdShm::default(), named, false);
            let reader = ReferenceReader::with_limits(Arc::new(shm), secret, self.peer_pid, limits);
            service = service.with_reference_handler(Arc::new(reader));
        }
        Ok(service)
    }

    /// The transfer service under `config` running `handler` on every payload: references are
    /// checked with the secret when there is one, and reply segments come from a memfd pool of
    /// this worker's, signed with it.
    pub fn handler_service(
        &self,
        config: ServiceConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<TransferService, SpawnedWorkerError> {
        let replies = match &self.secret_file {
            Some(path) => {
                let secret = Secret::read_file(path)
                    .map_err(|e| SpawnedWorkerError::Secret(e.to_string()))?;
                let pool =
                    SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default())
                        .map_err(|e| SpawnedWorkerError::Args(e.to_string()))?;
                Some((pool, secret))
            }
            None => None,
        };
        Ok(self.service(config)?.with_handler(handler, replies))
    }

    /// Binds, prints `listening <endpoint>` on standard output (the host waits for that line),
    /// and serves `service` until the host is gone or `stop` completes.
    pub async fn serve(
        &self,
        service: TransferService,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), SpawnedWorkerError> {
        let listener = Listener::bind(&self.listen).await?;
        println!("listening {}", listener.local_endpoint());
        let peer = self.peer_pid;
        let shutdown = async move {
            tokio::select! {
                () = stop => {}
                () = peer_gone(peer) => {}
            }
        };
        listener.serve(service, shutdown).await?;
        Ok(())
    }
}

/// Whether process `pid` runs.
pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Completes once process `pid` is gone; never without one.
async fn peer_gone(peer: Option<u32>) {
    let Some(pid) = peer else {
        return std::future::pending().await;
    };
    loop {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(PEER_CHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_contract_arguments_are_read_and_anything_else_is_named() {
        let w = SpawnedWorker::from_args(args(&[
            "--listen",
            "unix:/tmp/w.sock",
            "--peer-pid",
            "42",
            "--secret-file",
            "/tmp/secret",
        ]))
        .unwrap();
        assert_eq!(w.listen, Endpoint::Unix("/tmp/w.sock".into()));
        assert_eq!(w.peer_pid, Some(42));
        assert_eq!(w.secret_file, Some(PathBuf::from("/tmp/secret")));
        let err = SpawnedWorker::from_args(args(&["--peer-pid", "x"])).unwrap_err();
        assert_eq!(err.to_string(), "--peer-pid x: expected a process id");
        let err = SpawnedWorker::from_args(args(&["--verbose", "1"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected argument --verbose, expected --listen, --peer-pid or --secret-file"
        );
        let err = SpawnedWorker::from_args(args(&["--peer-pid", "1"])).unwrap_err();
        assert_eq!(err.to_string(), "--listen is missing");
        let err = SpawnedWorker::from_args(args(&["--listen"])).unwrap_err();
        assert_eq!(err.to_string(), "--listen has no value");
    }
}
