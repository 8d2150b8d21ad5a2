//! Project automation, run as `cargo xtask <command>`: CI checks, the tests with their external
//! tools and the quick performance gate, convention checks, the performance suite with its SLO
//! and baseline gate and reports (`perf`), and the decision hot-path timer (`perf-gate`).
//!
//! `cargo xtask perf` builds `perfopt` in release (with the `delay-injection` hook), runs
//! `perfopt suite` on `xtask/perf/scenarios.toml`, evaluates the SLOs of `xtask/perf/slo.toml`
//! on its results, compares them with the baseline of this machine under
//! `xtask/perf/baselines/`, and writes `report.json` and a self-contained `report.html`;
//! README.md ("The suite and the CI gate") describes the files and how the gate decides.

mod ci;
mod perf;
mod perf_gate;
mod test;
mod tidy;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
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
    /// run every test with the external suites on, then the quick perf gate and its bite check.
    Test,
    /// Run the performance suite, check its SLOs and the baseline, write the reports.
    Perf(PerfArgs),
    /// Check the dependency rules and the source conventions, printing every violation.
    Tidy,
    /// Measure single-decision latency in release mode; fail when a p99 is over budget.
    /// (The suite's `decision` scenario measures it too, in `cargo xtask perf`.)
    PerfGate {
        /// Decisions timed per series.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
    },
}

/// The arguments of `cargo xtask perf`.
#[derive(clap::Args)]
struct PerfArgs {
    /// Run the quick set (as `--set quick`).
    #[arg(long)]
    quick: bool,
    /// The scenario set to run (full when neither this nor --quick is given).
    #[arg(long, value_parser = ["quick", "full", "stress"])]
    set: Option<String>,
    /// Only these scenarios, comma-separated.
    #[arg(long, value_name = "NAMES")]
    only: Option<String>,
    /// Where results.json, report.json and report.html go (default target/perf).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Save this run as the baseline of this machine.
    #[arg(long)]
    save_baseline: bool,
    /// Analyse this results JSON instead of running the suite.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

impl PerfArgs {
    fn options(self, root: &Path) -> anyhow::Result<perf::Options> {
        if self.results.is_some() && (self.only.is_some() || self.quick || self.set.is_some()) {
            bail!(
                "--results analyses a finished run, expected no --quick, --set or --only with it"
            );
        }
        let set = match (self.quick, self.set) {
            (true, Some(set)) if set != "quick" => {
                bail!("--quick and --set {set} disagree, expected one set")
            }
            (true, _) => "quick".to_owned(),
            (false, set) => set.unwrap_or_else(|| "full".to_owned()),
        };
        Ok(perf::Options {
            set,
            only: self.only,
            // Absolute, since the runner runs in the workspace root, not here.
            out: std::path::absolute(self.out.unwrap_or_else(|| root.join("target/perf")))?,
            save_baseline: self.save_baseline,
            results: self.results,
            inject_delay_us: None,
        })
    }
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
        Command::Perf(args) => {
            let gate = perf::run(&root, &args.options(&root)?)?;
            perf::require_pass(&gate)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(args: &[&str]) -> anyhow::Result<perf::Options> {
        let cli = Cli::try_parse_from([&["cargo xtask", "perf"], args].concat())?;
        match cli.command {
            Command::Perf(args) => args.options(Path::new("/w")),
            _ => unreachable!("parsed as perf"),
        }
    }

    #[test]
    fn perf_arguments_pick_the_set_and_refuse_contradictions() {
        let full = perf(&[]).unwrap();
        assert_eq!(full.set, "full");
        assert_eq!(full.out, Path::new("/w/target/perf"));
        let quick = perf(&["--quick", "--only", "sizes,decision", "--out", "o"]).unwrap();
        assert_eq!(quick.set, "quick");
        assert_eq!(quick.only.as_deref(), Some("sizes,decision"));
        assert!(quick.out.is_absolute() && quick.out.ends_with("o"));
        assert_eq!(perf(&["--set", "stress"]).unwrap().set, "stress");
        assert!(perf(&["--quick", "--set", "full"]).is_err());
        assert!(perf(&["--set", "huge"]).is_err());
        assert!(perf(&["--results", "r.json", "--only", "sizes"]).is_err());
        let analysed = perf(&["--results", "r.json", "--save-baseline"]).unwrap();
        assert_eq!(analysed.results.as_deref(), Some(Path::new("r.json")));
        assert!(analysed.save_baseline);
    }
}
