//! The `perfopt` command line: decide, configure, run workers, benchmark and run workloads.

mod bench;
mod config_cmd;
mod decide;
mod exit;
mod run;
mod spawn;
mod summary;
mod worker;

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
    /// Runs a worker process that receives transfers on a socket.
    Worker(worker::WorkerArgs),
    /// Measures gRPC, zero-copy (pooled and fresh segments) and memcpy at each size against
    /// a worker process; prints crossovers and writes a calibration profile.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decide(args) => decide::run(&args),
        Command::Config(cmd) => config_cmd::run(&cmd),
        Command::Run(args) => run::run(&args),
        Command::Worker(args) => worker::run(&args),
        Command::Bench(args) => bench::run(&args),
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
