//! `perfopt serve`: the long-running daemon. Workers, the host runtime, the HTTP endpoints
//! (`perfopt::daemon`), the OTLP export the configuration names (`perfopt::export`), hot reload
//! of the configuration file, logs as text or JSON lines on stderr (the sampled decisions among
//! them: an audit log), and a graceful stop on SIGTERM or Ctrl-C: it stops admitting, drains the
//! transfers in flight within a deadline, flushes the store and exits 0.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use perfopt::core::rng::SplitMix;
use perfopt::daemon::{DaemonView, serve_on};
use perfopt::export::{ConfiguredExport, ExportEvent};
use perfopt::learn::LearnConfig;
use perfopt::monitor::http::{DEFAULT_LISTEN, HttpConfig, HttpListener};
use perfopt::{Optimizer, OptimizerError, ReloadEvent, TransferRequest};
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::args::{DataDirArg, DurationRange, WorkerCmdArg, parse_duration};
use crate::exit::Exit;
use crate::measure::calibration::{self, CalibrationPlan};

/// Drain deadlines accepted: 0 s to 10 min.
const DRAIN: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(600),
    whole_seconds: false,
    text: "0s to 10m",
};

/// How often the configuration file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Arguments of `perfopt serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where the HTTP endpoints listen (`/livez`, `/readyz`, `/metrics`, `/api/v1/`).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Lets `--listen` name an address other than loopback. The endpoints have no
    /// authentication: put them behind something that has.
    #[arg(long)]
    allow_remote: bool,
    /// A configuration file; it is watched, and a valid change is applied whole.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker processes to spawn (1 to 64).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[command(flatten)]
    worker: WorkerCmdArg,
    /// Drives a synthetic workload (1 KiB to 64 MiB, four at a time), so that the endpoints
    /// and the dashboard show transfers at once.
    #[arg(long)]
    demo_load: bool,
    /// How long a stop waits for the transfers in flight (0s to 10m).
    #[arg(long, default_value = "10s")]
    drain_timeout: String,
    /// How logs are written on stderr: `text` for people, `json` (one object per line) for a
    /// log pipeline. `RUST_LOG` filters them (default `info`; the sampled decisions are
    /// `perfopt::decision` events).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Calibrates the data directory first, as `perfopt calibrate` does (about 60 s), before
    /// serving: the daemon then decides with this machine's costs and the classifier trained
    /// on them.
    #[arg(long)]
    calibrate: bool,
    #[command(flatten)]
    data: DataDirArg,
}

/// How `perfopt serve` writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// The logs' target for what the daemon itself says.
const TARGET: &str = "perfopt::serve";

/// Installs the subscriber of the daemon's logs: `format` on stderr, filtered by `RUST_LOG`.
/// Lines are written by a thread of their own, so that a decision logged on the transfer path
/// never waits for stderr; the guard returned writes out what is queued when dropped.
fn init_logs(format: LogFormat) -> Result<WorkerGuard, Exit> {
    let filter = EnvFilter::builder()
        .with_default_directive(tracing::Level::INFO.into())
        .from_env()
        .map_err(|e| Exit::bad_input(format_args!("RUST_LOG is not a valid filter: {e}")))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
    installed.map_err(|e| Exit::failed(format_args!("cannot install the log subscriber: {e}")))?;
    Ok(guard)
}

/// Says what happened to the OTLP export.
fn log_export(event: &ExportEvent) {
    match event {
        ExportEvent::Started { endpoint } => {
            info!(target: TARGET, endpoint = endpoint.as_str(), "otlp: pushing metrics to {endpoint}");
        }
        ExportEvent::Stopped { endpoint } => {
            info!(target: TARGET, endpoint = endpoint.as_str(), "otlp: stopped pushing to {endpoint}");
        }
        ExportEvent::Failed { endpoint, error } => {
            warn!(target: TARGET, endpoint = endpoint.as_str(), "otlp: {endpoint}: {error}");
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Transfers of log-uniform sizes from 1 KiB to 64 MiB, one after another, until `stop`; the
/// one in flight when it comes is carried to its end (and recorded), never dropped.
async fn demo_load(
    host: perfopt::transport::Host,
    payload: Arc<[u8]>,
    seed: u64,
    stop: watch::Receiver<bool>,
) {
    let rng = SplitMix::new(seed);
    while !*stop.borrow() {
        let size = (10.0 + 16.0 * rng.next_f64()).exp2() as usize;
        let request = TransferRequest::new(size as u64);
        // A failure is recorded by the host and counted in the metrics.
        let _ = host.transfer(&request, &payload[..size]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `perfopt serve`.
pub(crate) fn serve(args: &ServeArgs) -> Result<(), Exit> {
    if !(1..=64).contains(&args.workers) {
        return Err(Exit::bad_input(format_args!(
            "--workers {} is out of range, expected 1 to 64",
            args.workers
        )));
    }
    let drain =
        parse_duration("--drain-timeout", &args.drain_timeout, &DRAIN).map_err(Exit::bad_input)?;
    let http = HttpConfig {
        listen: args.listen,
        allow_remote: args.allow_remote,
    };
    let _logs = init_logs(args.log_format)?;
    let dir = args.data.resolve()?;
    let worker = args.worker.command()?;
    if args.calibrate {
        let plan = CalibrationPlan::default_plan()?;
        let report = calibration::calibrate(&dir.path, &plan, worker.clone())?;
        info!(target: TARGET, "{}", report.trim_end());
    }
    let mut builder = Optimizer::builder()
        .data_dir(&dir.path)
        .cost_models(true)
        .learning(LearnConfig::default());
    if let Some(path) = &args.config {
        builder = builder
            .config_file(path)
            .watch(WATCH_EVERY)
            .on_reload(|event| match event {
                ReloadEvent::Applied { version } => {
                    info!(target: TARGET, version, "config: version {version} applied");
                }
                ReloadEvent::Rejected { error } => {
                    warn!(
                        target: TARGET,
                        "config: change rejected, the previous one stays: {error}"
                    );
                }
            });
    }
    let optimizer = builder.build().map_err(|e| match e {
        OptimizerError::Config { .. } | OptimizerError::Controller(_) => Exit::bad_input(e),
        other => Exit::failed(other),
    })?;
    for warning in optimizer.warnings() {
        warn!(target: TARGET, "{warning}");
    }
    if let Some(notice) = calibration::notice(&dir.path, optimizer.calibration()) {
        info!(target: TARGET, "{notice}");
    }
    let optimizer = Arc::new(optimizer);
    let export = ConfiguredExport::start(optimizer.clone(), Box::new(log_export));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    runtime.block_on(async {
        let listener = HttpListener::bind(&http).await.map_err(Exit::bad_input)?;
        let addr = listener.local_addr().map_err(Exit::failed)?;
        let host = optimizer
            .host()
            .spawn(worker, args.workers)
            .start()
            .await
            .map_err(Exit::failed)?;
        let view = Arc::new(DaemonView::new(optimizer.clone(), host.clone()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut stopped = stop_rx.clone();
        let server = tokio::spawn(serve_on(listener, view, async move {
            let _ = stopped.changed().await;
        }));
        println!("listening http://{addr}");
        let mut loads = Vec::new();
        if args.demo_load {
            let payload: Arc<[u8]> = perfopt::core::rng::random_bytes(64 << 20, 7).into();
            for i in 0..4 {
                loads.push(tokio::spawn(demo_load(
                    host.clone(),
                    payload.clone(),
                    i,
                    stop_rx.clone(),
                )));
            }
        }
        stop_signal().await;
        info!(target: TARGET, "stopping: draining transfers in flight (at most {drain:?})");
        let _ = stop_tx.send(true);
        let draining = host.clone();
        let drained = tokio::time::timeout(drain, async move {
            for load in loads {
                let _ = load.await;
            }
            draining.shutdown().await;
        })
        .await;
        if drained.is_err() {
            warn!(
                target: TARGET,
                "transfers still in flight after {drain:?}; stopping anyway"
            );
        }
        match server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Exit::failed(e)),
            Err(e) => Err(Exit::failed(format_args!("the HTTP server failed: {e}"))),
        }
    })?;
    drop(runtime);
    // A last push of the final numbers, then the optimizer is ours alone.
    drop(export);
    let report = match Arc::try_unwrap(optimizer) {
        Ok(optimizer) => optimizer.shutdown(),
        Err(_) => {
            return Err(Exit::failed(
                "the optimizer is still in use after the stop; its store was not flushed",
            ));
        }
    };
    if let Some(e) = &report.store.flush_error {
        return Err(Exit::failed(format_args!(
            "the store could not be flushed: {e}"
        )));
    }
    info!(
        target: TARGET,
        recorded = report.store.recorded,
        committed = report.store.committed,
        "stopped: {} transfers recorded, {} committed to the store",
        report.store.recorded,
        report.store.committed
    );
    Ok(())
}
