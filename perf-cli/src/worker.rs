//! `perfopt worker`: a real worker process serving the transfer protocol on a socket. Its code
//! is the checksum handler: a host that asks for a reply gets the XXH3-64 of the payload, 8
//! bytes little-endian, format `xxh3-64`; a one-way transfer costs nothing more.

use std::path::PathBuf;

use clap::Args;
use perf_core::parse_size;
use perfopt::transport::grpc::{Endpoint, ServiceConfig};
use perfopt::transport::host::{SpawnedWorker, SpawnedWorkerError, process_alive};
use perfopt::worker::{Call, Handler, HandlerError, Output};

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

fn config(args: &WorkerArgs) -> Result<ServiceConfig, Exit> {
    let max_inline = parse_size(&args.max_inline).map_err(Exit::bad_input)?;
    Ok(ServiceConfig {
        max_inline_bytes: max_inline,
        max_inflight_inline_bytes: ServiceConfig::default()
            .max_inflight_inline_bytes
            .max(max_inline),
        ..ServiceConfig::default()
    })
}

/// The worker's code: the payload's checksum, when the host asks for a reply.
struct ChecksumReply;

impl Handler for ChecksumReply {
    fn handle(&self, call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
        let sum = perfopt::transport::checksum::checksum(call.payload());
        Ok(Some(
            Output::bytes(sum.to_le_bytes().to_vec()).with_format("xxh3-64"),
        ))
    }

    /// One-way transfers (what `perfopt bench` measures) run no code.
    fn one_way(&self) -> bool {
        false
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Runs `perfopt worker` until it is told to stop.
pub(crate) fn run(args: &WorkerArgs) -> Result<(), Exit> {
    let worker = SpawnedWorker {
        listen: Endpoint::parse(&args.listen).map_err(Exit::bad_input)?,
        peer_pid: args.peer_pid,
        secret_file: args.secret_file.clone(),
    };
    if let Some(pid) = args.peer_pid.filter(|&pid| !process_alive(pid)) {
        return Err(Exit::bad_input(format!(
            "--peer-pid {pid}: expected a live host process, found no process with that pid"
        )));
    }
    let service = worker
        .handler_service(config(args)?, std::sync::Arc::new(ChecksumReply))
        .map_err(|e| match e {
            SpawnedWorkerError::Serve(_) => Exit::failed(e),
            _ => Exit::bad_input(e),
        })?;
    // The soft limit (often 1,024) would otherwise lower how many connections may be open.
    perfopt::platform::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    runtime
        .block_on(worker.serve(service, signalled()))
        .map_err(Exit::failed)
}
