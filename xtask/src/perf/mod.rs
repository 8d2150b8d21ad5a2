//! `cargo xtask perf`: runs the performance suite (`perfopt suite`, built in release with the
//! delay-injection hook), checks its results against the SLO file and the machine's baseline,
//! and writes the JSON and HTML reports.

mod baseline;
mod gate;
mod html;
mod report;
mod results;
mod slo;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) use gate::Gate;

/// The scenario file the runner reads, relative to the workspace root.
pub(crate) const SCENARIOS: &str = "xtask/perf/scenarios.toml";
/// The SLO file, relative to the workspace root.
pub(crate) const SLOS: &str = "xtask/perf/slo.toml";
/// The environment variable that makes the runner's zero-copy path slower (µs per transfer),
/// when it is built with the `delay-injection` feature.
pub(crate) const INJECT_DELAY: &str = "PERFOPT_INJECT_ZERO_COPY_DELAY_US";

/// What one `cargo xtask perf` does.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The scenario set: quick, full or stress.
    pub(crate) set: String,
    /// Only these scenarios (comma-separated), as the runner's `--only`.
    pub(crate) only: Option<String>,
    /// Where the results and reports go.
    pub(crate) out: PathBuf,
    /// Write this run as the machine's baseline.
    pub(crate) save_baseline: bool,
    /// Analyse this results JSON instead of running the suite.
    pub(crate) results: Option<PathBuf>,
    /// The zero-copy delay to inject into the runner: `None` leaves the environment as it is,
    /// `Some(0)` removes the variable.
    pub(crate) inject_delay_us: Option<u64>,
}

/// Runs (or reads) the suite's results, evaluates the gate, writes the reports, prints the
/// table, and returns the gate's decision; an error only when something could not run.
pub(crate) fn run(root: &Path, options: &Options) -> Result<Gate> {
    let runner = match options.results {
        Some(_) => None,
        None => Some(build_runner(root)?),
    };
    run_with(root, runner.as_deref(), options)
}

/// As [`run`], with the runner already built at `runner` (none with `options.results`).
pub(crate) fn run_with(root: &Path, runner: Option<&Path>, options: &Options) -> Result<Gate> {
    let slos = slo::SloFile::load(&root.join(SLOS))?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("could not create {}", options.out.display()))?;
    let results_path = match (&options.results, runner) {
        (Some(path), _) => path.clone(),
        (None, Some(runner)) => {
            let path = options.out.join("results.json");
            run_suite(root, runner, options, &path)?;
            path
        }
        (None, None) => bail!("no runner and no --results, expected one of them"),
    };
    analyse(root, &slos, &results_path, options)
}

fn analyse(
    root: &Path,
    slos: &slo::SloFile,
    results_path: &Path,
    options: &Options,
) -> Result<Gate> {
    let text = std::fs::read_to_string(results_path)
        .with_context(|| format!("could not read {}", results_path.display()))?;
    let results = results::Results::parse(&text, &results_path.display().to_string())?;
    let raw: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", results_path.display()))?;
    let baseline_path = baseline::path_for(root, &results);
    let stored = baseline::load(&baseline_path)?;
    let gate = gate::evaluate(slos, &results, stored.as_ref());
    let shown_path = baseline_path
        .strip_prefix(root)
        .unwrap_or(&baseline_path)
        .display()
        .to_string();
    let mut info = report::BaselineInfo {
        slug: results.machine.slug(),
        path: shown_path,
        found: stored.is_some(),
        saved: false,
    };
    if options.save_baseline {
        if results.injected_delay_us != 0 {
            bail!(
                "the results had a zero-copy delay of {} us injected, expected none in a baseline",
                results.injected_delay_us
            );
        }
        baseline::save(&baseline_path, &results, slos, stored.as_ref())?;
        info.saved = true;
    }
    let report = report::Report::new(&results, raw, &gate, info);
    report.write(&options.out)?;
    html::write(&options.out.join("report.html"), &report, &results)?;
    print!("{}", report::table(&report));
    println!(
        "perf: reports in {} and {}",
        options.out.join("report.json").display(),
        options.out.join("report.html").display()
    );
    Ok(gate)
}

/// The workspace's target directory: `CARGO_TARGET_DIR` (a relative one is relative to the
/// workspace root, where the build runs), else what `cargo metadata` says.
fn target_dir(root: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|it| !it.is_empty()) {
        return Ok(root.join(dir));
    }
    let output = Command::new(crate::cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .context("could not start `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed, expected success, got {}",
            output.status
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("`cargo metadata` printed something other than json")?;
    json["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` printed no target_directory")
}

/// Builds the runner in release with the delay-injection hook; returns its path.
pub(crate) fn build_runner(root: &Path) -> Result<PathBuf> {
    let args = [
        "build",
        "--release",
        "-p",
        "perf-cli",
        "--features",
        "delay-injection",
    ];
    let shown = format!("cargo {}", args.join(" "));
    println!("==> {shown}");
    let status = Command::new(crate::cargo())
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed, expected success, got {status}");
    }
    let runner = target_dir(root)?
        .join("release")
        .join(format!("perfopt{}", std::env::consts::EXE_SUFFIX));
    if !runner.is_file() {
        bail!(
            "{} does not exist after `{shown}`, expected the perfopt binary",
            runner.display()
        );
    }
    Ok(runner)
}

/// Runs the suite, its stderr streamed through, writing the results JSON at `json`.
fn run_suite(root: &Path, runner: &Path, options: &Options, json: &Path) -> Result<()> {
    let mut command = Command::new(runner);
    command
        .current_dir(root)
        .args(["suite", "--scenarios", SCENARIOS, "--set", &options.set]);
    if let Some(only) = &options.only {
        command.args(["--only", only]);
    }
    command.arg("--json").arg(json);
    let mut shown = format!(
        "perfopt suite --scenarios {SCENARIOS} --set {}{} --json {}",
        options.set,
        options
            .only
            .as_ref()
            .map(|it| format!(" --only {it}"))
            .unwrap_or_default(),
        json.display()
    );
    match options.inject_delay_us {
        Some(0) => {
            command.env_remove(INJECT_DELAY);
        }
        Some(us) => {
            command.env(INJECT_DELAY, us.to_string());
            shown = format!("{INJECT_DELAY}={us} {shown}");
        }
        None => {}
    }
    println!("==> {shown}");
    let _ = std::fs::remove_file(json);
    let status = command
        .status()
        .with_context(|| format!("could not start {}", runner.display()))?;
    if !status.success() {
        bail!("`{shown}` failed, expected success, got {status}");
    }
    if !json.is_file() {
        bail!(
            "`{shown}` succeeded but wrote no {}, expected the results JSON",
            json.display()
        );
    }
    Ok(())
}

/// The gate's failures as one error, when it failed.
pub(crate) fn require_pass(gate: &Gate) -> Result<()> {
    if gate.passed {
        println!("perf: every SLO met, no significant regression");
        return Ok(());
    }
    bail!(
        "perf gate failed with {} failure(s), listed above under `failures:`",
        gate.failures.len()
    )
}
