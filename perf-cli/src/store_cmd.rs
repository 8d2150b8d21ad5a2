//! `perfopt stats`, `export`, `migrate` and `doctor`: reading, upgrading and checking the metrics store.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use perf_core::{Method, MetricsQuery, Name, Percentiles, SampleFilter, SeriesQuery, Timestamp};
use perfopt::store::{
    Backend, RedbBackend, StoreQuery, check,
    datadir::{self, DataDir},
    migrate,
};
use serde_json::{Value, json};

use crate::exit::Exit;
use crate::run::parse_duration;

/// The data directory option every store command takes.
#[derive(Debug, Args)]
pub(crate) struct DataDirArg {
    /// The metrics store's directory (else PERFOPT_DATA_DIR, else the
    /// platform's data directory).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl DataDirArg {
    /// The chosen directory.
    pub(crate) fn resolve(&self) -> Result<DataDir, Exit> {
        datadir::resolve(self.data_dir.as_deref()).map_err(Exit::bad_input)
    }
}

/// Opens the store in `dir` for reading and writing.
pub(crate) fn open(dir: &DataDir) -> Result<RedbBackend, Exit> {
    RedbBackend::open(&dir.path)
        .map_err(|e| Exit::failed(format_args!("{}: {e}", dir.path.display())))
}

/// The wall clock.
pub(crate) fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

/// Arguments of `perfopt stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Only this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Only this method: zero_copy or grpc.
    #[arg(long)]
    method: Option<String>,
    /// How far back (e.g. 15m, 1h, 7d is 168h).
    #[arg(long, default_value = "1h")]
    since: String,
    /// Bucket width, 1s to 1h (e.g. 1s, 10s, 1m, 1h).
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

fn pct_json(p: &Percentiles) -> Value {
    json!({"count": p.count, "mean": p.mean, "min": p.min, "max": p.max,
           "p50": p.p50, "p95": p.p95, "p99": p.p99, "p999": p.p999})
}

/// Runs `perfopt stats`.
pub(crate) fn stats(args: &StatsArgs) -> Result<(), Exit> {
    let since = parse_duration(&args.since).map_err(Exit::bad_input)?;
    let width = parse_duration(&args.granularity).map_err(Exit::bad_input)?;
    let (pool, method) = filters(&args.pool, &args.method)?;
    let granularity_secs = u32::try_from(width.as_secs())
        .ok()
        .filter(|s| (1..=3600).contains(s) && width.subsec_nanos() == 0)
        .ok_or_else(|| {
            Exit::bad_input(format_args!(
                "--granularity {} is out of range, expected whole seconds from 1s to 1h",
                args.granularity
            ))
        })?;
    let dir = args.data.resolve()?;
    let backend: Arc<dyn Backend> = Arc::new(open(&dir)?);
    let query = StoreQuery::new(backend);
    let to = now();
    let q = SeriesQuery {
        pool,
        method,
        from: Timestamp(to.0.saturating_sub(since.as_nanos() as u64)),
        to: Timestamp(to.0 + 1_000_000_000),
        granularity_secs,
    };
    let points = query.series(&q).map_err(Exit::bad_input)?;
    let total = query.summary(&q).map_err(Exit::failed)?;
    let profile = if args.profile {
        let filter = SampleFilter {
            pool,
            method,
            since: q.from,
            sizes: None,
        };
        Some(query.profile(&filter, 1_000_000).map_err(Exit::failed)?)
    } else {
        None
    };
    if args.json {
        let buckets: Vec<Value> = points
            .iter()
            .map(|p| {
                json!({
                    "start_unix_s": p.start.0 / 1_000_000_000,
                    "count": p.latency_us.count,
                    "p50": p.latency_us.p50, "p95": p.latency_us.p95,
                    "p99": p.latency_us.p99, "p999": p.latency_us.p999,
                    "latency_us": pct_json(&p.latency_us),
                    "throughput_bps": pct_json(&p.throughput_bps),
                    "decision_ns": pct_json(&p.decision_ns),
                    "memory_bytes": pct_json(&p.memory_bytes),
                })
            })
            .collect();
        let out = json!({
            "data_dir": dir.path,
            "granularity_secs": granularity_secs,
            "total_transfers": total.latency_us.count,
            "latency_us": pct_json(&total.latency_us),
            "buckets": buckets,
            "profile": profile,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} transfers in the last {} ({}), latency p50 {} p99 {}",
        total.latency_us.count,
        args.since,
        dir.path.display(),
        perf_core::HumanMicros(total.latency_us.p50),
        perf_core::HumanMicros(total.latency_us.p99),
    );
    println!(
        "\n  {:<20} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "bucket (unix s)", "count", "p50", "p95", "p99", "p99.9"
    );
    for p in &points {
        let l = &p.latency_us;
        let us = |v: f64| perf_core::HumanMicros(v).to_string();
        println!(
            "  {:<20} {:>8} {:>10} {:>10} {:>10} {:>10}",
            p.start.0 / 1_000_000_000,
            l.count,
            us(l.p50),
            us(l.p95),
            us(l.p99),
            us(l.p999)
        );
    }
    if let Some(p) = &profile {
        println!("\n  latency by ({} samples)", p.samples);
        let tables = [
            ("size class", &p.by_size),
            ("format", &p.by_format),
            ("compression", &p.by_compression),
            ("cpu load", &p.by_load),
        ];
        for (what, rows) in tables {
            println!("  {what}:");
            for r in rows {
                println!(
                    "    {:<18} {:>8} transfers  p50 {:>10}  p95 {:>10}  {:>8.0} MiB/s",
                    r.group,
                    r.count,
                    perf_core::HumanMicros(r.latency_p50_us).to_string(),
                    perf_core::HumanMicros(r.latency_p95_us).to_string(),
                    r.mean_throughput_bps / (1024.0 * 1024.0)
                );
            }
        }
    }
    Ok(())
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
    /// How far back.
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
    let since = parse_duration(&args.since).map_err(Exit::bad_input)?;
    if !(1..=1_000_000).contains(&args.limit) {
        return Err(Exit::bad_input(format_args!(
            "--limit {} is out of range, expected 1 to 1000000",
            args.limit
        )));
    }
    let dir = args.data.resolve()?;
    let backend = open(&dir)?;
    let filter = SampleFilter {
        since: Timestamp(now().0.saturating_sub(since.as_nanos() as u64)),
        ..SampleFilter::default()
    };
    let mut samples = backend.samples(&filter, args.limit).map_err(Exit::failed)?;
    samples.reverse();
    let mut out = String::new();
    if args.format == ExportFormat::Csv {
        out += "started_at_ns,pool,method,decided_method,reason,size,data_type,format,latency_us,throughput_bps,memory_bytes,cpu_time_us,decision_ns,fallback,success\n";
    }
    for m in &samples {
        match args.format {
            ExportFormat::Jsonl => {
                out += &serde_json::to_string(m).map_err(Exit::failed)?;
                out.push('\n');
            }
            ExportFormat::Csv => {
                let fallback = m
                    .fallback
                    .and_then(|f| serde_json::to_value(f).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                out += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
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
                    m.success
                );
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// Runs `perfopt migrate`.
pub(crate) fn run_migrate(args: &DataDirArg) -> Result<(), Exit> {
    let dir = args.resolve()?;
    let report = migrate(&dir.path)
        .map_err(|e| Exit::failed(format_args!("{}: {e}", dir.path.display())))?;
    match report.backup {
        Some(backup) => println!(
            "migrated {} from schema version {} to {}; backup at {}",
            dir.path.display(),
            report.from,
            report.to,
            backup.display()
        ),
        None => println!(
            "{} is at schema version {}, nothing to do",
            dir.path.display(),
            report.to
        ),
    }
    Ok(())
}

/// Runs `perfopt doctor`: platform, data directory and store, and a configuration if given.
pub(crate) fn doctor(args: &DataDirArg, config: Option<&PathBuf>) -> Result<(), Exit> {
    let mut problems = Vec::new();
    let info = perfopt::platform::detect();
    println!(
        "platform: {}",
        serde_json::to_string(&info).unwrap_or_default()
    );
    match datadir::resolve(args.data_dir.as_deref()) {
        Ok(dir) => {
            println!(
                "data directory: {} (from {})",
                dir.path.display(),
                dir.source
            );
            let store = perfopt::store::db::store_file(&dir.path);
            if store.exists() {
                let report = check(&dir.path);
                println!(
                    "metrics store: {} bytes, schema version {}, {} samples, {} buckets, {} threshold changes",
                    report.file_bytes.unwrap_or(0),
                    report
                        .schema_version
                        .map_or_else(|| "unknown".to_string(), |v| v.to_string()),
                    report.rows.samples,
                    report.rows.buckets,
                    report.rows.thresholds
                );
                problems.extend(
                    report
                        .problems
                        .iter()
                        .map(|p| format!("metrics store: {p}")),
                );
            } else {
                println!(
                    "metrics store: none yet ({} will be created by perfopt run)",
                    store.display()
                );
            }
        }
        Err(e) => problems.push(format!("data directory: {e}")),
    }
    if let Some(path) = config {
        match perfopt::load_config(path) {
            Ok(_) => println!("configuration {}: ok", path.display()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        println!("ok");
        Ok(())
    } else {
        Err(Exit::failed(problems.join("\nerror: ")))
    }
}

/// Reads a retention period: `90m`, `36h`, `7d`; from 1 minute to 3650 days.
pub(crate) fn parse_keep(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid period {text:?}, expected e.g. 90m, 36h, 7d"))?;
    let secs = match unit {
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "invalid period {text:?}, expected a unit m, h or d"
            ));
        }
    };
    if !(60..=3650 * 86_400).contains(&secs) {
        return Err(format!(
            "period {text:?} is out of range, expected 1m to 3650d"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Arguments of `perfopt cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// How long raw samples are kept.
    #[arg(long, default_value = "7d")]
    keep_samples: String,
    /// How long 1-second buckets are kept.
    #[arg(long, default_value = "1d")]
    keep_seconds: String,
    /// How long 1-minute buckets are kept.
    #[arg(long, default_value = "30d")]
    keep_minutes: String,
    /// How long 1-hour buckets are kept.
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
    let keep = |t: &str| parse_keep(t).map_err(Exit::bad_input);
    let retention = perfopt::store::Retention {
        samples: keep(&args.keep_samples)?,
        second_buckets: keep(&args.keep_seconds)?,
        minute_buckets: keep(&args.keep_minutes)?,
        hour_buckets: keep(&args.keep_hours)?,
        archive_dir: args.archive_dir.clone(),
    };
    let dir = args.data.resolve()?;
    let report = open(&dir)?
        .clean_up(&retention, now())
        .map_err(Exit::failed)?;
    if args.json {
        println!(
            "{}",
            json!({
                "samples": report.samples,
                "second_buckets": report.second_buckets,
                "minute_buckets": report.minute_buckets,
                "hour_buckets": report.hour_buckets,
                "total": report.total(),
                "archive": report.archive,
            })
        );
    } else {
        println!(
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
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_parse_with_units_and_bounds() {
        assert_eq!(parse_keep("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_keep("36h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(parse_keep("90m").unwrap().as_secs(), 5400);
        for bad in ["", "7", "7w", "0m", "3651d", "-1d", "soon"] {
            assert!(parse_keep(bad).is_err(), "{bad}");
        }
    }
}
