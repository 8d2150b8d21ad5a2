//! Project automation, run as `cargo xtask <command>`: CI checks, the tests with their external
//! tools, convention checks, the perf gate.

mod ci;
mod perf_gate;
mod test;
mod tidy;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Project automation for perfopt.
#[derive(Parser)]
#[command(bin_name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run what CI runs: the format check, clippy with warnings denied, then the tests.
    Ci,
    /// Set up the external tools the tests drive (installing missing Debian packages as root),
    /// then run every test with the external suites on.
    Test,
    /// Check the dependency rules and the source conventions, printing every violation.
    Tidy,
    /// Measure single-decision latency in release mode; fail when a p99 is over budget.
    PerfGate {
        /// Decisions timed per series.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Command::Ci => {
            ci::run(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test => {
            test::run_tests(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PerfGate { samples } => {
            perf_gate::run(&root, samples)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tidy => {
            let violations = tidy::run(&root)?;
            for violation in &violations {
                println!("{violation}");
            }
            if violations.is_empty() {
                println!("tidy: no violations");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("tidy: {} violation(s)", violations.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The workspace root: the folder above this crate's manifest.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo binary to run: the one that runs us (`CARGO`), else `cargo` from `PATH`.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}
