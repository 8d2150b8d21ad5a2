//! `perfopt stats`, `export`, `migrate` and `doctor`: reading, upgrading and checking the metrics store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use perf_core::{FailureKind, Method, Name, SampleFilter, StatsRequest, Timestamp};
use perfopt::store::{
    Backend, RedbBackend, RedbReader, StatsReport, StoreFile, StoreQuery, check, check_access,
    datadir::{self, DataDir},
    migrate,
};
use serde_json::{Value, json};

use crate::args::{BUCKET_WIDTH, DataDirArg, LOOK_BACK, RETENTION, parse_duration};
use crate::clock::now;
use crate::exit::{Exit, Output};

/// Opens the store in `dir` for reading and writing.
fn open(dir: &DataDir) -> Result<RedbBackend, Exit> {
    RedbBackend::open(&dir.path)
        .map_err(|e| Exit::failed(format_args!("{}: {e}", dir.path.display())))
}

/// Opens the store in `dir` for reading only: it works on a read-only filesystem.
fn open_reader(dir: &DataDir) -> Result<RedbReader, Exit> {
    RedbReader::open(&dir.path)
        .map_err(|e| Exit::failed(format_args!("{}: {e}", dir.path.display())))
}

/// Arguments of `perfopt stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Asks a running `perfopt serve` at this address (`http://127.0.0.1:9464`) instead of
    /// reading a store: it answers from the store it holds, with what it has not yet flushed.
    #[arg(long, conflicts_with = "data_dir")]
    daemon: Option<String>,
    /// Only this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Only this method: zero_copy or grpc.
    #[arg(long)]
    method: Option<String>,
    /// How far back, 1s to 3650d (e.g. 15m, 1h, 7d is 168h, 30d); at most 100000 buckets
    /// of the granularity.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Bucket width, whole seconds from 1s to 1h (e.g. 1s, 10s, 1m, 1h).
    #[arg(long, default_value = "1m")]
    granularity: String,
    /// Also shows how latency correlates with size, format, compression
    /// and CPU load, from the raw samples of the range.
    #[arg(long)]
    profile: bool,
    /// Prints one JSON object.
    #[arg(long)]
    json: bool,
}

fn filters(
    pool: &Option<String>,
    method: &Option<String>,
) -> Result<(Option<Name>, Option<Method>), Exit> {
    let pool = pool
        .as_deref()
        .map(Name::new)
        .transpose()
        .map_err(|e| Exit::bad_input(format_args!("invalid --pool: {e}")))?;
    let method = method
        .as_deref()
        .map(str::parse::<Method>)
        .transpose()
        .map_err(Exit::bad_input)?;
    Ok((pool, method))
}

/// Failures by kind as text, in the order of [`FailureKind::ALL`] and `unknown` last:
/// `timeout 3, refused 1`, or `none`.
fn kinds_text(kinds: &BTreeMap<String, u64>) -> String {
    if kinds.is_empty() {
        return "none".to_string();
    }
    let rank = |k: &str| {
        FailureKind::ALL
            .iter()
            .position(|kind| kind.as_str() == k)
            .unwrap_or(usize::MAX)
    };
    let mut parts: Vec<(&String, &u64)> = kinds.iter().collect();
    parts.sort_by_key(|(k, _)| rank(k));
    let parts: Vec<String> = parts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

/// Fails when `pool` is not one the store holds transfers of, naming the ones it does.
fn expect_known_pool(reader: &RedbReader, pool: Name) -> Result<(), Exit> {
    let pools = reader.pools().map_err(Exit::failed)?;
    if pools.contains(&pool) {
        return Ok(());
    }
    let known = if pools.is_empty() {
        "none yet".to_string()
    } else {
        pools
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Exit::bad_input(format_args!(
        "unknown --pool {:?}: the store {} holds no transfer of it, only of: {known}",
        pool.as_str(),
        reader.path().display()
    )))
}

/// The largest answer taken from a daemon, in bytes.
const MAX_DAEMON_ANSWER: u64 = 64 << 20;

/// Asks the daemon at `base` for the statistics of `request`.
fn ask_daemon(base: &str, request: &StatsRequest) -> Result<StatsReport, Exit> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") || base.len() > 2048 {
        return Err(Exit::bad_input(format_args!(
            "--daemon {base:?}: expected the daemon's address as http://host:port"
        )));
    }
    let mut url = format!(
        "{base}/api/v1/stats?since_secs={}&granularity_secs={}&profile={}",
        request.since_secs, request.granularity_secs, request.profile
    );
    if let Some(pool) = request.pool {
        url.push_str(&format!("&pool={}", pool.as_str()));
    }
    if let Some(method) = request.method {
        url.push_str(&format!("&method={}", method.as_str()));
    }
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|e| Exit::failed(format_args!("cannot ask the daemon at {base}: {e}")))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_DAEMON_ANSWER)
        .read_to_string()
        .map_err(|e| Exit::failed(format_args!("the daemon at {base} answered badly: {e}")))?;
    if !status.is_success() {
        let why = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let message = format!("the daemon at {base} refused: {status}: {why}");
        return Err(if status.is_client_error() {
            Exit::bad_input(message)
        } else {
            Exit::failed(message)
        });
    }
    serde_json::from_str(&body).map_err(|e| {
        Exit::failed(format_args!(
            "the daemon at {base} sent statistics this perfopt cannot read: {e}"
        ))
    })
}

/// Runs `perfopt stats`.
pub(crate) fn stats(args: &StatsArgs) -> Result<(), Exit> {
    let since = parse_duration("--since", &args.since, &LOOK_BACK).map_err(Exit::bad_input)?;
    let width = parse_duration("--granularity", &args.granularity, &BUCKET_WIDTH)
        .map_err(Exit::bad_input)?;
    let (pool, method) = filters(&args.pool, &args.method)?;
    let request = StatsRequest {
        pool,
        method,
        // A fraction of a second more still looks back over it.
        since_secs: since.as_nanos().div_ceil(1_000_000_000) as u64,
        // Whole seconds from 1 s to 1 h, so it fits.
        granularity_secs: width.as_secs() as u32,
        profile: args.profile,
    };
    request.check().map_err(Exit::bad_input)?;
    let (report, source) = match &args.daemon {
        Some(base) => (ask_daemon(base, &request)?, ("daemon", json!(base))),
        None => {
            let dir = args.data.resolve()?;
            let reader = open_reader(&dir)?;
            let query = StoreQuery::new(Arc::new(reader.clone()) as Arc<dyn Backend>);
            let report = StatsReport::read(&query, &request, now()).map_err(Exit::bad_input)?;
            if let Some(pool) = pool
                && report.total_transfers == 0
            {
                expect_known_pool(&reader, pool)?;
            }
            (report, ("data_dir", json!(dir.path)))
        }
    };
    let mut out = Output::new();
    if args.json {
        let mut json = serde_json::to_value(&report).map_err(Exit::failed)?;
        if let Some(object) = json.as_object_mut() {
            object.insert(source.0.to_owned(), source.1);
        }
        writeln!(out, "{json}")?;
        return out.finish();
    }
    let us = |v: f64| perf_core::HumanMicros(v).to_string();
    writeln!(
        out,
        "{} transfers in the last {} ({}): {} delivered, {} failed; latency of the delivered p50 {} p99 {}",
        report.total_transfers,
        args.since,
        source
            .1
            .as_str()
            .map_or_else(|| source.1.to_string(), str::to_owned),
        report.delivered,
        report.failed,
        us(report.latency_us.p50),
        us(report.latency_us.p99),
    )?;
    writeln!(
        out,
        "  failures by kind: {}",
        kinds_text(&report.failures_by_kind)
    )?;
    writeln!(
        out,
        "\n  {:<20} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12}",
        "method", "transfers", "delivered", "failed", "p50", "p99", "queued mean"
    )?;
    for m in &report.by_method {
        writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12}",
            m.method.as_str(),
            m.transfers,
            m.delivered,
            m.failed,
            us(m.latency_us.p50),
            us(m.latency_us.p99),
            us(m.queued_us.mean)
        )?;
        if m.failed > 0 {
            writeln!(
                out,
                "  {:<20} failures: {}",
                "",
                kinds_text(&m.failures_by_kind)
            )?;
        }
    }
    writeln!(
        out,
        "\n  {:<20} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "bucket (unix s)", "count", "failed", "p50", "p95", "p99", "p99.9"
    )?;
    for b in &report.buckets {
        let l = &b.latency_us;
        writeln!(
            out,
            "  {:<20} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
            b.start_unix_s,
            b.count,
            b.failed,
            us(l.p50),
            us(l.p95),
            us(l.p99),
            us(l.p999)
        )?;
    }
    if let Some(p) = &report.profile {
        writeln!(out, "\n  latency by ({} samples)", p.samples)?;
        let tables = [
            ("size class", &p.by_size),
            ("format", &p.by_format),
            ("compression", &p.by_compression),
            ("cpu load", &p.by_load),
        ];
        for (what, rows) in tables {
            writeln!(out, "  {what}:")?;
            for r in rows {
                writeln!(
                    out,
                    "    {:<18} {:>8} transfers  p50 {:>10}  p95 {:>10}  {:>8.0} MiB/s",
                    r.group,
                    r.count,
                    perf_core::HumanMicros(r.latency_p50_us).to_string(),
                    perf_core::HumanMicros(r.latency_p95_us).to_string(),
                    r.mean_throughput_bps / (1024.0 * 1024.0)
                )?;
            }
        }
    }
    out.finish()
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// Arguments of `perfopt export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// How far back, 1s to 3650d (e.g. 15m, 24h, 7d, 30d).
    #[arg(long, default_value = "24h")]
    since: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportFormat,
    /// At most this many samples (the most recent), 1 to 1000000.
    #[arg(long, default_value_t = 1_000_000)]
    limit: usize,
}

/// Runs `perfopt export`: raw samples, oldest first, on standard output.
pub(crate) fn export(args: &ExportArgs) -> Result<(), Exit> {
    let since = parse_duration("--since", &args.since, &LOOK_BACK).map_err(Exit::bad_input)?;
    if !(1..=1_000_000).contains(&args.limit) {
        return Err(Exit::bad_input(format_args!(
            "--limit {} is out of range, expected 1 to 1000000",
            args.limit
        )));
    }
    let dir = args.data.resolve()?;
    let reader = open_reader(&dir)?;
    let filter = SampleFilter {
        since: Timestamp(now().0.saturating_sub(since.as_nanos() as u64)),
        ..SampleFilter::default()
    };
    let mut samples = reader.samples(&filter, args.limit).map_err(Exit::failed)?;
    samples.reverse();
    let mut out = Output::new();
    if args.format == ExportFormat::Csv {
        writeln!(
            out,
            "started_at_ns,pool,method,decided_method,reason,size,data_type,format,latency_us,throughput_bps,memory_bytes,cpu_time_us,decision_ns,fallback,success,failure,queued_us,experiment,variant"
        )?;
    }
    for m in &samples {
        match args.format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut out, m).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
            ExportFormat::Csv => {
                let fallback = m
                    .fallback
                    .and_then(|f| serde_json::to_value(f).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    m.started_at.0,
                    m.pool,
                    m.method,
                    m.decided_method,
                    m.reason,
                    m.size,
                    m.data_type,
                    m.format,
                    m.latency_us,
                    m.throughput_bps,
                    m.memory_bytes,
                    m.cpu_time_us,
                    m.decision_ns,
                    fallback,
                    m.success,
                    m.failure.map_or("", |f| f.as_str()),
                    m.queued_us,
                    m.experiment
                        .map(|a| a.experiment.to_string())
                        .unwrap_or_default(),
                    m.experiment
                        .map(|a| a.variant.to_string())
                        .unwrap_or_default(),
                )?;
            }
        }
    }
    out.finish()
}

/// Runs `perfopt migrate`.
pub(crate) fn run_migrate(args: &DataDirArg) -> Result<(), Exit> {
    let dir = args.resolve()?;
    let report = migrate(&dir.path)
        .map_err(|e| Exit::failed(format_args!("{}: {e}", dir.path.display())))?;
    let mut out = Output::new();
    match report.backup {
        Some(backup) => writeln!(
            out,
            "migrated {} from schema version {} to {}; backup at {}",
            dir.path.display(),
            report.from,
            report.to,
            backup.display()
        )?,
        None => writeln!(
            out,
            "{} is at schema version {}, nothing to do",
            dir.path.display(),
            report.to
        )?,
    }
    out.finish()
}

/// `yes`, or `no` and why.
fn verdict(result: &Result<(), String>) -> String {
    match result {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("no ({e})"),
    }
}

/// Runs `perfopt doctor`: platform, data directory and store, and a configuration if given.
///
/// It reports what `run` (the store opened for writing, the directory for new files) and
/// `stats` and `export` (the store opened for reading) would meet, without opening anything
/// that is not a regular file, and exits 1 listing every problem.
pub(crate) fn doctor(args: &DataDirArg, config: Option<&PathBuf>) -> Result<(), Exit> {
    // A `--config` that names no readable regular file is a bad argument, not a finding.
    let config = config.map(|path| (path, perfopt::load_config(path)));
    if let Some((_, Err(e))) = &config
        && !matches!(e, perfopt::OptimizerError::Config { .. })
    {
        return Err(Exit::bad_input(e));
    }
    let mut problems = Vec::new();
    let mut out = Output::new();
    let info = perfopt::platform::detect();
    writeln!(
        out,
        "platform: {}",
        serde_json::to_string(&info).unwrap_or_default()
    )?;
    match datadir::resolve(args.data_dir.as_deref()) {
        Ok(dir) => {
            writeln!(
                out,
                "data directory: {} (from {})",
                dir.path.display(),
                dir.source
            )?;
            let access = check_access(&dir.path);
            writeln!(
                out,
                "data directory writable (new store, migration backups): {}",
                verdict(&access.directory)
            )?;
            match &access.store {
                StoreFile::Missing => writeln!(
                    out,
                    "metrics store: none yet ({} will be created by perfopt run)",
                    access.path.display()
                )?,
                StoreFile::Regular { .. } => {
                    let report = check(&dir.path);
                    writeln!(
                        out,
                        "metrics store: {} bytes, schema version {}, {} samples, {} buckets, {} threshold changes",
                        report.file_bytes.unwrap_or(0),
                        report
                            .schema_version
                            .map_or_else(|| "unknown".to_string(), |v| v.to_string()),
                        report.rows.samples,
                        report.rows.buckets,
                        report.rows.thresholds
                    )?;
                    problems.extend(
                        report
                            .problems
                            .iter()
                            .map(|p| format!("metrics store: {p}")),
                    );
                }
                StoreFile::NotRegular { what } => writeln!(
                    out,
                    "metrics store: {} is {what}, not a store",
                    access.path.display()
                )?,
                StoreFile::Unknown { reason } => writeln!(
                    out,
                    "metrics store: {} cannot be looked at ({reason})",
                    access.path.display()
                )?,
            }
            if let Some(write) = &access.write {
                writeln!(
                    out,
                    "metrics store opens for writing (run, cleanup, migrate): {}",
                    verdict(write)
                )?;
            }
            if let Some(read) = &access.read {
                writeln!(
                    out,
                    "metrics store opens for reading (stats, export): {}",
                    verdict(read)
                )?;
            }
            problems.extend(access.problems());
        }
        Err(e) => problems.push(format!("data directory: {e}")),
    }
    if let Some((path, loaded)) = config {
        match loaded {
            Ok(_) => writeln!(out, "configuration {}: ok", path.display())?,
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        writeln!(out, "ok")?;
        out.finish()
    } else {
        out.finish()?;
        Err(Exit::failed(problems.join("\nerror: ")))
    }
}

/// Arguments of `perfopt cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// How long raw samples are kept, 1m to 3650d (e.g. 90m, 36h, 7d).
    #[arg(long, default_value = "7d")]
    keep_samples: String,
    /// How long 1-second buckets are kept, 1m to 3650d.
    #[arg(long, default_value = "1d")]
    keep_seconds: String,
    /// How long 1-minute buckets are kept, 1m to 3650d.
    #[arg(long, default_value = "30d")]
    keep_minutes: String,
    /// How long 1-hour buckets are kept, 1m to 3650d.
    #[arg(long, default_value = "365d")]
    keep_hours: String,
    /// Archives what is removed to a compressed file in this directory first.
    #[arg(long)]
    archive_dir: Option<PathBuf>,
    /// Prints one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `perfopt cleanup`: removes metrics past their retention, archiving them first if asked.
pub(crate) fn cleanup(args: &CleanupArgs) -> Result<(), Exit> {
    let keep = |flag: &str, t: &str| parse_duration(flag, t, &RETENTION).map_err(Exit::bad_input);
    let retention = perfopt::store::Retention {
        samples: keep("--keep-samples", &args.keep_samples)?,
        second_buckets: keep("--keep-seconds", &args.keep_seconds)?,
        minute_buckets: keep("--keep-minutes", &args.keep_minutes)?,
        hour_buckets: keep("--keep-hours", &args.keep_hours)?,
        archive_dir: args.archive_dir.clone(),
    };
    let dir = args.data.resolve()?;
    let report = open(&dir)?
        .clean_up(&retention, now())
        .map_err(Exit::failed)?;
    let mut out = Output::new();
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "samples": report.samples,
                "second_buckets": report.second_buckets,
                "minute_buckets": report.minute_buckets,
                "hour_buckets": report.hour_buckets,
                "total": report.total(),
                "archive": report.archive,
            })
        )?;
    } else {
        writeln!(
            out,
            "removed {} rows: {} samples, {} 1 s buckets, {} 1 min buckets, {} 1 h buckets{}",
            report.total(),
            report.samples,
            report.second_buckets,
            report.minute_buckets,
            report.hour_buckets,
            report
                .archive
                .as_ref()
                .map_or_else(String::new, |a| format!("; archived to {}", a.display()))
        )?;
    }
    out.finish()
}
