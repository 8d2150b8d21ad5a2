//! The `perfopt` command line: decide, configure, run workers, benchmark and run workloads.

// Commands, one module each; they never import each other.
mod ab_cmd;
mod bench;
mod burn;
mod calibrate;
mod config_cmd;
mod decide;
mod model_cmd;
mod predict_cmd;
mod run;
mod serve;
mod store_cmd;
mod suite;
mod worker;

// What several commands share.
mod args;
mod clock;
mod exit;
mod load;
mod measure;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Exit;

/// Decides, per transfer, between shared memory and gRPC, and explains why.
#[derive(Debug, Parser)]
#[command(name = "perfopt", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows which method the policy picks for one transfer, and why.
    Decide(decide::DecideArgs),
    /// Prints, validates and compares configuration files.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// The main job: spawns workers and drives a workload of real transfers.
    Run(run::RunArgs),
    /// The daemon: spawns workers and serves the HTTP endpoints (`/livez`, `/readyz`,
    /// `/metrics`, `/api/v1/`) until SIGTERM, then drains and flushes.
    Serve(serve::ServeArgs),
    /// Runs a worker process that receives transfers on a socket.
    Worker(worker::WorkerArgs),
    /// Percentiles per time bucket from the metrics store.
    Stats(store_cmd::StatsArgs),
    /// Raw samples from the metrics store, as JSON lines or CSV.
    Export(store_cmd::ExportArgs),
    /// Removes metrics past their retention, archiving them first if asked.
    Cleanup(store_cmd::CleanupArgs),
    /// Upgrades the metrics store to this version's schema, after a backup.
    Migrate(args::DataDirArg),
    /// Checks the platform, the data directory, the metrics store and a configuration.
    Doctor {
        #[command(flatten)]
        data: args::DataDirArg,
        /// A configuration file to validate too.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Measures gRPC, zero-copy (pooled and fresh segments) and memcpy at each size against
    /// a worker process; prints crossovers and writes a calibration profile.
    Bench(bench::BenchArgs),
    /// Runs the performance scenarios of a scenario file with real transfers and writes
    /// every series' samples, counts and resources as JSON (`cargo xtask perf` checks them).
    Suite(suite::SuiteArgs),
    /// Measures this machine (both methods across sizes, idle and under CPU load) and
    /// calibrates the data directory: the cost profile and a first validated classifier.
    Calibrate(calibrate::CalibrateArgs),
    /// Estimates a transfer's latency, interval, throughput and memory per method, from models
    /// learned on the stored samples (or the calibrated coefficients when they are too few).
    Predict(predict_cmd::PredictArgs),
    /// Forecasts latency percentiles, CPU, shared memory and the first bottleneck for a
    /// transfer rate, a size mix and a worker count, with what-if for threshold and budget.
    Plan(predict_cmd::PlanArgs),
    /// A/B experiments of the configuration: list them, and each one's status and report
    /// from the metrics store.
    #[command(subcommand)]
    Ab(ab_cmd::AbCommand),
    /// The learned classifier: paired measurements, status, training and evaluation.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Keeps CPUs busy until killed or for at most --seconds (load for `model collect`).
    #[command(hide = true)]
    Burn(burn::BurnArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command that prints with `println!` panics when its reader closed standard output
    // (`perfopt stats | head`); that panic is the same quiet end as an `Output` write that
    // fails with a broken pipe, so its message is not printed, and the unwinding is caught
    // below. SIGPIPE keeps its ignored disposition: a host writing to sockets must not die of it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !exit::is_closed_output_panic(info.payload()) {
            default_hook(info);
        }
    }));
    let result =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli.command))) {
            Ok(result) => result,
            Err(payload) if exit::is_closed_output_panic(payload.as_ref()) => {
                Err(Exit::closed_output())
            }
            Err(payload) => std::panic::resume_unwind(payload),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit { code, message }) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(code)
        }
    }
}

fn dispatch(command: Command) -> Result<(), Exit> {
    match command {
        Command::Decide(args) => decide::run(&args),
        Command::Config(cmd) => config_cmd::run(&cmd),
        Command::Run(args) => run::run(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Worker(args) => worker::run(&args),
        Command::Stats(args) => store_cmd::stats(&args),
        Command::Export(args) => store_cmd::export(&args),
        Command::Migrate(args) => store_cmd::run_migrate(&args),
        Command::Cleanup(args) => store_cmd::cleanup(&args),
        Command::Doctor { data, config } => store_cmd::doctor(&data, config.as_ref()),
        Command::Bench(args) => bench::run(&args),
        Command::Suite(args) => suite::run(&args),
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Predict(args) => predict_cmd::predict(&args),
        Command::Plan(args) => predict_cmd::plan_cmd(&args),
        Command::Model(cmd) => model_cmd::run(&cmd),
        Command::Ab(cmd) => ab_cmd::run(&cmd),
        Command::Burn(args) => burn::burn(&args),
    }
}
