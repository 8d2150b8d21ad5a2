//! `perfopt ab`: the configuration's experiments, and each one's status and report from the
//! transfers in the metrics store.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use perfopt::abtest::report::{Comparison, Status, VariantReport, in_unit, p_text};
use perfopt::abtest::stats::SrmGrade;
use perfopt::abtest::{ExperimentReport, Recommendation};
use perfopt::core::config::{Experiment, ExperimentMetric, PoolSettings};
use perfopt::core::size::config_size;
use perfopt::core::{Config, HumanMicros, HumanSize};
use perfopt::{StoredReport, experiments, stored_experiment_report};
use serde_json::json;

use crate::args::{DataDirArg, config};
use crate::clock::now;
use crate::exit::Exit;

/// `perfopt ab ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AbCommand {
    /// Lists the configuration's experiments: pool, variants and weights, window, metric, mode.
    List(ListArgs),
    /// One experiment in a few lines: where it stands, sessions and transfers per variant, the
    /// sample-ratio check and the recommendation.
    Status(ReportArgs),
    /// One experiment's report: per variant the samples, mean and percentiles, the difference
    /// with the control and its interval, the p-value (always valid in sequential mode), the
    /// sample-ratio check, and the recommendation with its reason.
    Report(ReportArgs),
    /// Writes a variant's settings into its pool in the configuration file and stops the
    /// experiment: the report's winner, or `--variant`. Validated, backed up beside the file,
    /// written atomically (a running `perfopt serve` applies it by hot reload) and journaled
    /// with who, when and why in the data directory.
    Promote(PromoteArgs),
    /// Restores the configuration file as it was before the experiment's last promotion.
    Rollback(RollbackArgs),
    /// Estimates a candidate configuration's mean latency from the logged transfers and their
    /// propensities (IPS, self-normalised IPS, doubly robust), before it runs live.
    Simulate(SimulateArgs),
}

/// Arguments of `perfopt ab simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The candidate configuration file.
    #[arg(long)]
    candidate: PathBuf,
    /// Only the transfers of this pool.
    #[arg(long)]
    pool: Option<String>,
    /// The newest transfers read, at most 1000000.
    #[arg(long, default_value_t = 100_000)]
    limit: usize,
    /// The intervals' level is 1 - alpha.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `perfopt ab promote`.
#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The experiment's name.
    name: String,
    /// The configuration file that defines it, and that is changed.
    #[arg(long)]
    config: PathBuf,
    /// The variant to promote (else the one the report recommends; without a recommended
    /// winner nothing is promoted).
    #[arg(long)]
    variant: Option<String>,
    /// Why, for the journal (else the report's reason, or "promoted by hand").
    #[arg(long)]
    why: Option<String>,
    /// Who, for the journal (else $USER).
    #[arg(long)]
    who: Option<String>,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `perfopt ab rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The experiment's name.
    name: String,
    /// The configuration file to restore.
    #[arg(long)]
    config: PathBuf,
    /// Why, for the journal.
    #[arg(long, default_value = "rolled back")]
    why: String,
    /// Who, for the journal (else $USER).
    #[arg(long)]
    who: Option<String>,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `perfopt ab list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The configuration file whose `[[experiments]]` to list (else the default
    /// configuration, which has none).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `perfopt ab status` and `perfopt ab report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The experiment's name.
    name: String,
    /// The configuration file that defines it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `perfopt ab ...`.
pub(crate) fn run(cmd: &AbCommand) -> Result<(), Exit> {
    match cmd {
        AbCommand::List(args) => list(args),
        AbCommand::Status(args) => report(args, false),
        AbCommand::Report(args) => report(args, true),
        AbCommand::Promote(args) => promote(args),
        AbCommand::Rollback(args) => rollback(args),
        AbCommand::Simulate(args) => simulate(args),
    }
}

fn simulate(args: &SimulateArgs) -> Result<(), Exit> {
    let candidate = config(Some(&args.candidate))?;
    if !(1..=perfopt::MAX_EXPERIMENT_RECORDS).contains(&args.limit) {
        return Err(Exit::bad_input(format_args!(
            "--limit {} is out of range, expected 1 to {}",
            args.limit,
            perfopt::MAX_EXPERIMENT_RECORDS
        )));
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(Exit::bad_input(format_args!(
            "--alpha {} is out of range, expected above 0 and below 1",
            args.alpha
        )));
    }
    let pool = args
        .pool
        .as_deref()
        .map(|p| {
            perfopt::core::Name::new(p)
                .map_err(|e| Exit::bad_input(format_args!("--pool {p:?}: {e}")))
        })
        .transpose()?;
    let dir = args.data.resolve()?;
    let filter = perfopt::core::SampleFilter {
        pool,
        ..perfopt::core::SampleFilter::default()
    };
    let run =
        perfopt::stored_offline_evaluation(&dir.path, &candidate, &filter, args.limit, args.alpha)
            .map_err(Exit::failed)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).map_err(Exit::failed)?
        );
        return Ok(());
    }
    let Some(e) = &run.evaluation else {
        println!(
            "no estimate from {} logged transfers: {}",
            run.transfers,
            run.problem.as_deref().unwrap_or("nothing to evaluate")
        );
        return Ok(());
    };
    let level = (1.0 - e.alpha) * 100.0;
    println!(
        "{} offline, from {} logged transfers ({} where it takes the logged action, {} it could \
         not have been seen taking; effective sample size {:.0}):",
        args.candidate.display(),
        e.n,
        e.matched,
        e.unsupported,
        e.effective_sample_size
    );
    for (name, est) in [("IPS", e.ips), ("SNIPS", e.snips), ("doubly robust", e.dr)] {
        println!(
            "  {name:<14} mean latency {} ({level:.0} % interval {} to {})",
            HumanMicros(est.estimate),
            HumanMicros(est.ci.low),
            HumanMicros(est.ci.high)
        );
    }
    println!(
        "  logged policy  mean latency {} (what the transfers took)",
        HumanMicros(e.logged_mean)
    );
    println!(
        "  direct model: the candidate's cost estimates{}",
        if run.calibrated_model {
            ", with the data directory's calibration"
        } else {
            ""
        }
    );
    Ok(())
}

fn who(given: Option<&String>) -> String {
    given
        .cloned()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn promote(args: &PromoteArgs) -> Result<(), Exit> {
    let config = config(Some(&args.config))?;
    let experiment = find(&config, &args.name)?;
    let dir = args.data.resolve()?;
    let now_ms = experiments::now_unix_ms();
    let (variant, reason) = match &args.variant {
        Some(v) => (v.clone(), "promoted by hand".to_string()),
        None => {
            let stored =
                stored_experiment_report(&dir.path, experiment, now_ms).map_err(Exit::failed)?;
            match stored.report.recommendation {
                Recommendation::Promote { variant } => (variant, stored.report.reason),
                _ => {
                    return Err(Exit::bad_input(format_args!(
                        "experiment {} has no winner to promote ({}: {}); name one with \
                         --variant to promote it anyway",
                        args.name,
                        action(&stored.report),
                        stored.report.reason
                    )));
                }
            }
        }
    };
    let why = args.why.clone().unwrap_or(reason);
    let who = who(args.who.as_ref());
    let request = experiments::Request {
        who: &who,
        why: &why,
        now_unix_ms: now_ms,
    };
    let event = experiments::promote(&args.config, &dir.path, &args.name, &variant, request)
        .map_err(lifecycle_exit)?;
    print_event(&event, args.json)
}

fn rollback(args: &RollbackArgs) -> Result<(), Exit> {
    let dir = args.data.resolve()?;
    let who = who(args.who.as_ref());
    let request = experiments::Request {
        who: &who,
        why: &args.why,
        now_unix_ms: experiments::now_unix_ms(),
    };
    let event = experiments::rollback(&args.config, &dir.path, &args.name, request)
        .map_err(lifecycle_exit)?;
    print_event(&event, args.json)
}

fn lifecycle_exit(e: experiments::LifecycleError) -> Exit {
    match e {
        experiments::LifecycleError::Io { .. } => Exit::failed(e),
        _ => Exit::bad_input(e),
    }
}

fn print_event(event: &experiments::LifecycleEvent, json: bool) -> Result<(), Exit> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(event).map_err(Exit::failed)?
        );
        return Ok(());
    }
    let done = if event.action == "promote" {
        format!("promoted {} of {}", event.variant, event.experiment)
    } else {
        format!(
            "rolled back the promotion of {} of {}",
            event.variant, event.experiment
        )
    };
    println!(
        "{done} in {} (the file before: {}), by {}: {}",
        event.config.display(),
        event.backup.display(),
        event.who,
        event.why
    );
    for change in &event.changes {
        println!("  {change}");
    }
    Ok(())
}

fn list(args: &ListArgs) -> Result<(), Exit> {
    let config = config(args.config.as_ref())?;
    if args.json {
        let text = serde_json::to_string_pretty(&json!({ "experiments": config.experiments }))
            .map_err(Exit::failed)?;
        println!("{text}");
        return Ok(());
    }
    if config.experiments.is_empty() {
        println!("no experiments configured (add [[experiments]] to the configuration file)");
        return Ok(());
    }
    for e in &config.experiments {
        let variants: Vec<String> = e
            .variants
            .iter()
            .map(|v| {
                let overrides = if v.overrides.is_empty() {
                    String::new()
                } else {
                    let set: Vec<String> = v
                        .overrides
                        .iter()
                        .map(|k| format!("{k} {}", setting(&v.settings, k)))
                        .collect();
                    format!(" ({})", set.join(", "))
                };
                format!("{} {} %{overrides}", v.name, percent(v.weight))
            })
            .collect();
        println!(
            "{}: pool {}, {}; {}, {}, alpha {}, {} samples per variant{}",
            e.name,
            e.pool,
            variants.join(", "),
            e.metric,
            e.mode,
            e.alpha,
            e.min_samples,
            window(e)
        );
    }
    Ok(())
}

/// The experiment named `name` of `config`, or an error naming the configured ones.
fn find<'a>(config: &'a Config, name: &str) -> Result<&'a Experiment, Exit> {
    config
        .experiments
        .iter()
        .find(|e| e.name.as_str() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.experiments.iter().map(|e| e.name.as_str()).collect();
            let expected = if known.is_empty() {
                "an experiment of the configuration, which has none (pass --config FILE)".into()
            } else {
                format!("one of {}", known.join(", "))
            };
            Exit::bad_input(format_args!("no experiment {name:?}, expected {expected}"))
        })
}

fn report(args: &ReportArgs, full: bool) -> Result<(), Exit> {
    let config = config(args.config.as_ref())?;
    let experiment = find(&config, &args.name)?;
    let dir = args.data.resolve()?;
    let now_ms = now().as_nanos() / 1_000_000;
    let stored = stored_experiment_report(&dir.path, experiment, now_ms).map_err(Exit::failed)?;
    if args.json {
        let text = serde_json::to_string_pretty(&stored).map_err(Exit::failed)?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", text(experiment, &stored, full));
    Ok(())
}

/// The report as text: the status lines, and the per-variant table when `full`.
fn text(e: &Experiment, stored: &StoredReport, full: bool) -> String {
    let r = &stored.report;
    let mut out = String::new();
    let status = match r.status {
        Status::NotStarted => "not started",
        Status::Running => "running",
        Status::Stopped => "stopped",
    };
    let _ = writeln!(
        out,
        "experiment {} (pool {}, {}, {}, alpha {}, {} samples per variant{}): {status}",
        r.experiment,
        r.pool,
        r.metric,
        r.mode,
        r.alpha,
        r.min_samples,
        window(e)
    );
    if stored.truncated {
        let _ = writeln!(
            out,
            "  (the newest {} transfers only: the store holds more)",
            stored.records
        );
    }
    if full {
        let _ = writeln!(
            out,
            "  {:<16} {:>6} {:>9} {:>10} {:>7} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}  vs control",
            "variant",
            "weight",
            "sessions",
            "transfers",
            "failed",
            "fallbacks",
            "samples",
            "mean",
            "p50",
            "p95",
            "p99"
        );
        for v in &r.variants {
            let _ = writeln!(out, "  {}", row(r.metric, v));
        }
    } else {
        for v in &r.variants {
            let _ = writeln!(
                out,
                "  {}: {} sessions, {} transfers ({} failed), {} samples{}",
                v.name,
                v.sessions,
                v.transfers,
                v.failed,
                v.samples,
                v.vs_control
                    .map(|c| format!("; {}", comparison(r.metric, &c)))
                    .unwrap_or_default()
            );
        }
    }
    match &r.srm {
        Some(s) => {
            let _ = writeln!(
                out,
                "  sample ratio: {} (sessions, chi-square p {}, largest share off by {:.4})",
                grade(s.grade),
                p_text(s.p_value),
                s.max_deviation
            );
        }
        None => {
            let _ = writeln!(out, "  sample ratio: no sessions yet");
        }
    }
    let _ = writeln!(out, "  recommendation: {}: {}", action(r), r.reason);
    out
}

fn grade(g: SrmGrade) -> &'static str {
    match g {
        SrmGrade::Green => "green",
        SrmGrade::Yellow => "yellow",
        SrmGrade::Red => "red, no winner can be named",
    }
}

fn action(r: &ExperimentReport) -> String {
    match &r.recommendation {
        Recommendation::Promote { variant } => format!("promote {variant}"),
        Recommendation::KeepControl => "keep the control".into(),
        Recommendation::Inconclusive {
            samples_needed: Some(n),
        } => format!("inconclusive, about {n} more samples per variant"),
        Recommendation::Inconclusive {
            samples_needed: None,
        } => "inconclusive".into(),
    }
}

fn row(metric: ExperimentMetric, v: &VariantReport) -> String {
    format!(
        "{:<16} {:>5}% {:>9} {:>10} {:>7} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}  {}",
        v.name,
        percent(v.weight),
        v.sessions,
        v.transfers,
        v.failed,
        v.fallbacks,
        v.samples,
        shown(metric, v.mean),
        shown(metric, v.p50),
        shown(metric, v.p95),
        shown(metric, v.p99),
        v.vs_control
            .map(|c| comparison(metric, &c))
            .unwrap_or_else(|| "-".into())
    )
}

/// A treatment against the control: the difference, relative when known, its interval and
/// p-value, and whether it is significant.
fn comparison(metric: ExperimentMetric, c: &Comparison) -> String {
    let a = &c.absolute;
    let relative = c
        .relative
        .map(|r| format!(" ({:+.1} %)", r.estimate * 100.0))
        .unwrap_or_default();
    let verdict = match (c.significant, c.better) {
        (true, true) => "better",
        (true, false) => "worse",
        (false, _) => "not significant",
    };
    format!(
        "{}{relative}, interval {} to {}, p {}: {verdict}",
        in_unit(metric, a.estimate),
        in_unit(metric, a.ci.low),
        in_unit(metric, a.ci.high),
        p_text(a.p_value)
    )
}

/// A value of the metric in its unit.
fn shown(metric: ExperimentMetric, x: f64) -> String {
    match metric {
        ExperimentMetric::MeanLatency
        | ExperimentMetric::P95Latency
        | ExperimentMetric::CpuTime => HumanMicros(x).to_string(),
        ExperimentMetric::Throughput => format!("{}/s", HumanSize(x.max(0.0) as u64)),
        ExperimentMetric::Memory => HumanSize(x.max(0.0) as u64).to_string(),
    }
}

/// A pool setting's value as the configuration writes it.
fn setting(s: &PoolSettings, key: &str) -> String {
    match key {
        "goal" => s.goal.to_string(),
        "floor" => config_size(s.floor),
        "ceiling" => config_size(s.ceiling),
        "threshold" => config_size(s.threshold),
        "marginal_gain" => s.marginal_gain.to_string(),
        "exploration_rate" => s.exploration_rate.to_string(),
        "exploration_band" => s.exploration_band.to_string(),
        "learning" => s.learning.to_string(),
        "verify" => s.verify.to_string(),
        other => format!("({other})"),
    }
}

fn percent(weight: f64) -> String {
    let p = weight * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// The experiment's window, when it has one.
fn window(e: &Experiment) -> String {
    let at = |ms: u64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string()
    };
    match (e.start_unix_ms, e.stop_unix_ms) {
        (None, None) => String::new(),
        (Some(start), None) => format!(", from {}", at(start)),
        (None, Some(stop)) => format!(", until {}", at(stop)),
        (Some(start), Some(stop)) => format!(", {} to {}", at(start), at(stop)),
    }
}
