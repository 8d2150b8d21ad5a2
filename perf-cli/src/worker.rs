//! `perfopt worker`: a real worker process serving the transfer protocol on a socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use perf_core::parse_size;
use perfopt::platform::{MemfdShm, NamedShm, NamedShmConfig, SystemShm};
use perfopt::transport::grpc::{Endpoint, Listener, ServiceConfig, TransferService};
use perfopt::transport::{ReferenceReader, Secret};

use crate::exit::Exit;

/// Arguments of `perfopt worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Where to listen: `unix:PATH` (same host) or `tcp:HOST:PORT` (loopback
    /// unless a host is given).
    #[arg(long)]
    listen: String,
    /// The per-host secret (32 bytes, mode 0600) that signs zero-copy
    /// references; without it the worker takes gRPC transfers only.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The host process: shared-memory segments must belong to it, and the
    /// worker exits when it is gone.
    #[arg(long)]
    peer_pid: Option<u32>,
    /// Largest inline payload accepted.
    #[arg(long, default_value = "1GiB")]
    max_inline: String,
}

fn service(args: &WorkerArgs) -> Result<TransferService, Exit> {
    let max_inline = parse_size(&args.max_inline).map_err(Exit::bad_input)?;
    let config = ServiceConfig {
        max_inline_bytes: max_inline,
        max_inflight_inline_bytes: ServiceConfig::default()
            .max_inflight_inline_bytes
            .max(max_inline),
        ..ServiceConfig::default()
    };
    let mut service = TransferService::new(config).map_err(Exit::bad_input)?;
    if let Some(path) = &args.secret_file {
        let secret = Secret::read_file(path).map_err(Exit::bad_input)?;
        let named = NamedShm::new(NamedShmConfig::default()).map_err(Exit::failed)?;
        let shm = SystemShm::new(MemfdShm::default(), named, false);
        let reader = ReferenceReader::new(Arc::new(shm), secret, args.peer_pid);
        service = service.with_reference_handler(Arc::new(reader));
    }
    Ok(service)
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Completes on Ctrl-C, SIGTERM, or when the peer process is gone.
async fn shutdown(peer: Option<u32>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let peer_gone = async {
        match peer {
            Some(pid) => loop {
                if !alive(pid) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        () = peer_gone => {}
    }
}

/// Runs `perfopt worker` until it is told to stop.
pub(crate) fn run(args: &WorkerArgs) -> Result<(), Exit> {
    let endpoint = Endpoint::parse(&args.listen).map_err(Exit::bad_input)?;
    if let Some(pid) = args.peer_pid.filter(|&pid| !alive(pid)) {
        return Err(Exit::bad_input(format!(
            "--peer-pid {pid}: expected a live host process, found no process with that pid"
        )));
    }
    let service = service(args)?;
    // The soft limit (often 1,024) would otherwise lower how many connections may be open.
    perfopt::platform::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    runtime.block_on(async {
        let listener = Listener::bind(&endpoint).await.map_err(Exit::failed)?;
        // The host reads this line to learn where the worker listens.
        println!("listening {}", listener.local_endpoint());
        listener
            .serve(service, shutdown(args.peer_pid))
            .await
            .map_err(Exit::failed)
    })
}
