//! `perfopt suite`: runs the scenarios of a scenario file (one set, or some by name) with real
//! transfers through the library's host runtime and writes every series' samples, counts and
//! resources as JSON, for `cargo xtask perf` to check against SLOs and baselines.

mod host_load;
mod machine;
mod methods;
mod micro;
mod scenario;
mod series;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{Value, json};

use self::scenario::{Kind, Scenario, Set};
use self::series::Series;
use crate::exit::Exit;

/// The variable whose microseconds a build with the `delay-injection` feature adds to every
/// zero-copy transfer, to show that the perf gate fails on a slowdown.
pub(crate) const INJECT_VAR: &str = "PERFOPT_INJECT_ZERO_COPY_DELAY_US";

/// Arguments of `perfopt suite`.
#[derive(Debug, Args)]
pub(crate) struct SuiteArgs {
    /// The scenario file (`xtask/perf/scenarios.toml` in the source tree).
    #[arg(long)]
    scenarios: PathBuf,
    /// Runs the scenarios of this set.
    #[arg(long, value_enum, default_value = "quick")]
    set: Set,
    /// Runs only these scenarios of the set, by name (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Writes the results as JSON to this file (`-` for standard output).
    #[arg(long)]
    json: PathBuf,
    /// Runs inside a private mount namespace whose /dev/shm is a tmpfs of this many bytes,
    /// mounted first (how a memory-pressure scenario runs itself; needs root).
    #[arg(long, hide = true)]
    private_shm: Option<u64>,
}

/// What a scenario measured: its series (as the results have them) and its figures.
pub(crate) struct Measured {
    pub(crate) series: Vec<Value>,
    pub(crate) figures: serde_json::Map<String, Value>,
}

impl Measured {
    /// `series` and no figures yet.
    pub(crate) fn series(series: &[Series]) -> Measured {
        Measured {
            series: series.iter().map(Series::to_json).collect(),
            figures: serde_json::Map::new(),
        }
    }

    /// Adds a figure.
    pub(crate) fn figure(&mut self, name: &str, value: impl Into<Value>) {
        self.figures.insert(name.to_string(), value.into());
    }
}

/// Runs `perfopt suite`.
pub(crate) fn run(args: &SuiteArgs) -> Result<(), Exit> {
    crate::args::check_output("--json", Some(&args.json), true)?;
    let all = scenario::read(&args.scenarios).map_err(Exit::bad_input)?;
    let chosen = choose(&all, args.set, &args.only)?;
    if let Some(bytes) = args.private_shm {
        mount_private_shm(bytes)?;
    }
    let injected_us: u64 = std::env::var(INJECT_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if injected_us > 0 && !cfg!(feature = "delay-injection") {
        return Err(Exit::bad_input(format_args!(
            "{INJECT_VAR} is set, but this perfopt was built without the delay-injection \
             feature, so nothing would be delayed"
        )));
    }
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = Instant::now();
    let mut results = Vec::new();
    // A run in a private mount namespace reports inside its parent's run.
    let who = if args.private_shm.is_some() {
        "suite (private /dev/shm)"
    } else {
        "suite"
    };
    for s in &chosen {
        eprintln!("{who}: {} ({}) ...", s.name, s.kind.name());
        let began = Instant::now();
        let measured = run_one(s, args)?;
        let elapsed = began.elapsed().as_secs_f64();
        eprintln!("{who}: {} done in {elapsed:.1} s", s.name);
        results.push(json!({
            "name": s.name,
            "kind": s.kind.name(),
            "description": s.description,
            "elapsed_s": elapsed,
            "series": measured.series,
            "figures": measured.figures,
        }));
    }
    let report = json!({
        "schema": 1,
        "set": args.set.name(),
        "scenario_file": args.scenarios.display().to_string(),
        "started_unix_s": started_unix,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": machine::describe(&backend_name()),
        "injected_delay_us": injected_us,
        "scenarios": results,
    });
    write_json(&args.json, &report)
}

/// The scenarios of `set`, or of `only` among them, in file order.
fn choose<'a>(all: &'a [Scenario], set: Set, only: &[String]) -> Result<Vec<&'a Scenario>, Exit> {
    for name in only {
        match all.iter().find(|s| &s.name == name) {
            None => {
                let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                return Err(Exit::bad_input(format_args!(
                    "--only {name}: no such scenario, expected one of {}",
                    names.join(", ")
                )));
            }
            Some(s) if !s.sets.contains(&set) => {
                return Err(Exit::bad_input(format_args!(
                    "--only {name}: the scenario is not in the {} set",
                    set.name()
                )));
            }
            Some(_) => {}
        }
    }
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| s.sets.contains(&set) && (only.is_empty() || only.contains(&s.name)))
        .collect();
    if chosen.is_empty() {
        return Err(Exit::bad_input(format_args!(
            "no scenario is in the {} set",
            set.name()
        )));
    }
    Ok(chosen)
}

fn run_one(s: &Scenario, args: &SuiteArgs) -> Result<Measured, Exit> {
    match &s.kind {
        Kind::Methods(spec) => methods::run(spec),
        Kind::Concurrency(spec) => host_load::concurrency(spec),
        Kind::Policies(spec) => host_load::policies(spec),
        Kind::Recording(spec) => micro::recording(spec),
        Kind::Decision(spec) => micro::decision(spec),
        Kind::MemoryPressure(spec) if args.private_shm.is_some() => {
            host_load::memory_pressure(spec)
        }
        Kind::MemoryPressure(spec) => in_private_shm(s, spec.shm_device, args),
        Kind::CpuSaturation(spec) => host_load::cpu_saturation(spec),
    }
    .map_err(|e| Exit {
        code: e.code,
        message: format!(
            "error: {}: {}",
            s.name,
            e.message.trim_start_matches("error: ")
        ),
    })
}

/// Runs scenario `s` again in a child `perfopt suite` inside a private mount namespace whose
/// /dev/shm holds only `bytes`, and takes its measurements.
fn in_private_shm(s: &Scenario, bytes: u64, args: &SuiteArgs) -> Result<Measured, Exit> {
    let exe = std::env::current_exe().map_err(Exit::failed)?;
    let dir = tempfile::tempdir().map_err(Exit::failed)?;
    let out = dir.path().join("results.json");
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .arg("suite")
        .arg("--scenarios")
        .arg(&args.scenarios)
        .args(["--set", args.set.name(), "--only", &s.name])
        .arg("--json")
        .arg(&out)
        .arg("--private-shm")
        .arg(bytes.to_string())
        .status()
        .map_err(|e| {
            Exit::failed(format_args!(
                "cannot run unshare(1) for a private /dev/shm ({e}): this scenario needs \
                 util-linux's unshare and root"
            ))
        })?;
    if !status.success() {
        return Err(Exit::failed(format_args!(
            "the scenario's run in a private mount namespace failed ({status}); it needs root \
             to mount a private /dev/shm"
        )));
    }
    let report = read_json(&out)?;
    let scenario = &report["scenarios"][0];
    let mut measured = Measured {
        series: scenario["series"].as_array().cloned().unwrap_or_default(),
        figures: serde_json::Map::new(),
    };
    if let Some(figures) = scenario["figures"].as_object() {
        measured.figures = figures.clone();
    }
    Ok(measured)
}

/// Mounts a tmpfs of `bytes` over /dev/shm; the caller runs in a private mount namespace.
fn mount_private_shm(bytes: u64) -> Result<(), Exit> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={bytes},mode=1777"))
        .args(["perfopt-suite", "/dev/shm"])
        .status()
        .map_err(|e| Exit::failed(format_args!("cannot run mount(8): {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Exit::failed(format_args!(
            "cannot mount a private /dev/shm of {bytes} bytes ({status}), expected to run as \
             root in a private mount namespace"
        )))
    }
}

/// The shared-memory backend the scenarios create segments with.
fn backend_name() -> String {
    perfopt::segment_pool(perfopt::transport::SegmentPoolConfig::default())
        .map(|p| p.backend().to_string())
        .unwrap_or_else(|_| "none".to_string())
}

fn read_json(path: &Path) -> Result<Value, Exit> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::failed(format_args!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Exit::failed(format_args!("{} is not JSON: {e}", path.display())))
}

fn write_json(path: &Path, report: &Value) -> Result<(), Exit> {
    let text = serde_json::to_string_pretty(report).map_err(Exit::failed)? + "\n";
    if path.as_os_str() == "-" {
        print!("{text}");
        Ok(())
    } else {
        crate::measure::write_atomically(path, &text)
            .map(|_| ())
            .map_err(|e| Exit::failed(format_args!("cannot write {}: {e}", path.display())))
    }
}
