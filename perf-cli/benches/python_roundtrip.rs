//! Round trips from a Rust host to the Python worker and back, against what a Python user would
//! otherwise write: f32 arrays of 1 KiB, 1 MiB, 64 MiB and 256 MiB handed to
//! `python -m perfopt_worker.demo`, which echoes them (a reply as large as the payload) or sums
//! them (an 8-byte reply), each by zero-copy and by gRPC, interleaved in one run; then
//! `python/perfopt-worker/bench/baseline.py` in the same run (gRPC between two Python
//! processes, and `multiprocessing.shared_memory` with a pickled header over a Pipe, without
//! and with the XXH3 passes perfopt's protocol makes).
//!
//! `cargo bench -p perf-cli --bench python_roundtrip` prints medians (p95 from 20 samples on)
//! and the ratios, then where each perfopt round trip's time went (carrying the request and the
//! worker's part of it, the host's work between the ack and the reply, taking the reply); `-- --json PATH` or `PERFOPT_BENCH_JSON=PATH` writes every sample as JSON.
//! It makes the Python worker's venv with `python/setup_venv.py` (python3 with `venv` and `pip`
//! and the package index are needed) and fails saying so when it cannot.
//!
//! Each arm uses its own pool so that the reply travels as the request does: the pool
//! `zero-copy` has a threshold of 1 KiB (replies over the 64 KiB inline limit come back in a
//! segment of the worker's), the pool `grpc` one of 1 GiB (they are fetched by gRPC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use perf_core::{Config, FixedProbe, Name};
use perfopt::transport::grpc::{ClientConfig, checksum};
use perfopt::transport::{CallOptions, Host, HostConfig, ReplyMethod, WorkerCommand};
use perfopt::{Method, Optimizer, TransferRequest};
use serde_json::json;

#[path = "../../tests/e2e/python_venv.rs"]
mod python_venv;
use python_venv::{repo, venv_python};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Payload sizes and timed round trips of each arm at that size.
const SIZES: [(usize, usize); 4] = [(KIB, 30), (MIB, 30), (64 * MIB, 7), (256 * MIB, 3)];
/// Untimed round trips of each arm before the timed ones, per size.
const WARMUPS: usize = 1;
const MODES: [&str; 2] = ["echo", "sum"];
const METHODS: [Method; 2] = [Method::ZeroCopy, Method::Grpc];
/// Samples from which a p95 is reported.
const P95_FROM: usize = 20;

const CONFIG: &str = r#"
version = 1

[pools.zero-copy]
floor = "1KiB"
threshold = "1KiB"
exploration_rate = 0.0
learning = false

[pools.grpc]
threshold = "1GiB"
exploration_rate = 0.0
learning = false
"#;

/// `n` little-endian f32s: 0.0, 0.25, 0.5, ... wrapping at 1024, so that every sum is exact.
fn floats(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ((i % 1024) as f32 * 0.25).to_le_bytes())
        .collect()
}

fn exact_sum(bytes: &[u8]) -> f64 {
    bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .sum()
}

/// Median and, from [`P95_FROM`] samples on, p95 (nearest rank), in microseconds.
fn summary(samples: &[f64]) -> (f64, Option<f64>) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let p95 = (n >= P95_FROM).then(|| s[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1]);
    (median, p95)
}

fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e4 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn human_size(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::ZeroCopy => "zero_copy",
        Method::Grpc => "grpc",
    }
}

/// One timed call: the round trip's time, checked after the clock stops, and how the reply came.
async fn round_trip(
    host: &Host,
    method: Method,
    mode: &str,
    payload: &[u8],
    expected_sum: f64,
) -> Result<(f64, ReplyMethod, Parts)> {
    let pool = Name::new(match method {
        Method::ZeroCopy => "zero-copy",
        Method::Grpc => "grpc",
    })?;
    let request = TransferRequest::new(payload.len() as u64)
        .with_pool(pool)
        .with_override(method);
    let options = CallOptions {
        metadata: [("mode".to_owned(), mode.to_owned())].into(),
        dtype: Some("<f4".to_owned()),
        shape: Some(vec![(payload.len() / 4) as u64]),
    };
    let started = Instant::now();
    let reply = host.call_with(&request, payload, &options).await;
    let took = started.elapsed().as_secs_f64() * 1e6;
    let what = format!("{mode} of {} by {method}", human_size(payload.len()));
    let reply = reply.with_context(|| what.clone())?;
    let carried = reply.outcome().metrics.method;
    ensure!(carried == method, "{what}: carried by {carried}");
    match mode {
        "sum" => {
            let sum = f64::from_le_bytes(
                reply
                    .bytes()
                    .try_into()
                    .with_context(|| format!("{what}: a {}-byte reply", reply.len()))?,
            );
            ensure!(
                sum == expected_sum,
                "{what}: sum {sum}, expected {expected_sum}"
            );
        }
        _ => {
            ensure!(
                reply.len() == payload.len(),
                "{what}: a reply of {} bytes",
                reply.len()
            );
            ensure!(
                checksum(reply.bytes()) == checksum(payload),
                "{what}: the reply differs from the payload"
            );
        }
    }
    let outcome = reply.outcome();
    let parts = Parts {
        request_us: outcome.metrics.latency_us,
        worker_us: outcome.ack.worker_ns as f64 / 1e3,
        reply_us: reply.metrics().latency_us,
    };
    Ok((took, reply.metrics().method, parts))
}

/// Where one round trip's time went, as the host measured it.
#[derive(Debug, Clone, Copy)]
struct Parts {
    /// Carrying the request: copy-in (zero-copy) or sending, up to the ack in hand.
    request_us: f64,
    /// The worker's own time inside that, as its ack says.
    worker_us: f64,
    /// From the ack to the reply's bytes in hand and checked.
    reply_us: f64,
}

/// The arms' samples: (size, mode, arm) -> microseconds.
type Samples = BTreeMap<(usize, String, String), Vec<f64>>;
/// The perfopt arms' round trips taken apart: (size, mode, arm) -> (total, parts) per sample.
type Breakdown = BTreeMap<(usize, String, String), Vec<(f64, Parts)>>;

async fn measure_perfopt(
    host: &Host,
    replies: &mut BTreeMap<(usize, String, String), String>,
    breakdown: &mut Breakdown,
) -> Result<Samples> {
    let largest = floats(SIZES.iter().map(|s| s.0).max().unwrap() / 4);
    let mut samples = Samples::new();
    for (size, repeats) in SIZES {
        let payload = &largest[..size];
        let expected_sum = exact_sum(payload);
        for round in 0..WARMUPS + repeats {
            for mode in MODES {
                for method in METHODS {
                    let (took, via, parts) =
                        round_trip(host, method, mode, payload, expected_sum).await?;
                    let arm = format!("perfopt_{}", method_name(method));
                    replies.insert((size, mode.to_owned(), arm.clone()), format!("{via:?}"));
                    if round >= WARMUPS {
                        breakdown
                            .entry((size, mode.to_owned(), arm.clone()))
                            .or_default()
                            .push((took, parts));
                        samples
                            .entry((size, mode.to_owned(), arm))
                            .or_default()
                            .push(took);
                    }
                }
            }
        }
        eprintln!("perfopt: {} done", human_size(size));
    }
    Ok(samples)
}

fn measure_baselines(python: &Path, samples: &mut Samples) -> Result<serde_json::Value> {
    let out_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python_roundtrip_baseline.json");
    let script = repo().join("python/perfopt-worker/bench/baseline.py");
    let list = |f: fn(&(usize, usize)) -> usize| {
        SIZES
            .iter()
            .map(|s| f(s).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let status = Command::new(python)
        .arg(&script)
        .arg("--json")
        .arg(&out_path)
        .arg("--sizes")
        .arg(list(|s| s.0))
        .arg("--repeats")
        .arg(list(|s| s.1))
        .arg("--warmups")
        .arg(WARMUPS.to_string())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(status.success(), "{} failed ({status})", script.display());
    let text = std::fs::read_to_string(&out_path)
        .with_context(|| format!("reading {}", out_path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    for row in doc["rows"]
        .as_array()
        .context("the baseline's JSON has no rows")?
    {
        let size = row["size"].as_u64().context("a row without size")? as usize;
        let mode = row["mode"]
            .as_str()
            .context("a row without mode")?
            .to_owned();
        let arm = format!(
            "python_{}",
            row["baseline"].as_str().context("a row without baseline")?
        );
        let taken: Vec<f64> = row["samples_us"]
            .as_array()
            .context("a row without samples")?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        samples.insert((size, mode, arm), taken);
    }
    Ok(json!({
        "python": doc["python"],
        "grpcio": doc["grpcio"],
        "numpy": doc["numpy"],
    }))
}

/// Prints, per perfopt arm, the medians of each part of a round trip: carrying the request up to
/// the ack (and the worker's time inside it), the host's work between the ack and taking the
/// reply (comparing the payload's checksum), and taking the reply (mapping or fetching it and
/// checking its checksum). Returns them as JSON.
fn print_breakdown(breakdown: &Breakdown) -> serde_json::Value {
    println!();
    println!("where the perfopt round trips went, medians of each part");
    println!(
        "{:>8} {:>5} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "size", "mode", "arm", "round trip", "request", "worker", "host rest", "after ack", "reply"
    );
    let med = |v: Vec<f64>| summary(&v).0;
    let mut out = Vec::new();
    for ((size, mode, arm), samples) in breakdown {
        let column = |f: &dyn Fn(&(f64, Parts)) -> f64| med(samples.iter().map(f).collect());
        let total = column(&|s| s.0);
        let request = column(&|s| s.1.request_us);
        let worker = column(&|s| s.1.worker_us);
        let host_rest = column(&|s| s.1.request_us - s.1.worker_us);
        let after_ack = column(&|s| s.0 - s.1.request_us - s.1.reply_us);
        let reply = column(&|s| s.1.reply_us);
        println!(
            "{:>8} {mode:>5} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            human_size(*size),
            arm.trim_start_matches("perfopt_"),
            human_us(total),
            human_us(request),
            human_us(worker),
            human_us(host_rest),
            human_us(after_ack),
            human_us(reply),
        );
        out.push(json!({
            "size": size, "mode": mode, "arm": arm,
            "round_trip_us": total, "request_us": request, "worker_us": worker,
            "host_request_rest_us": host_rest, "after_ack_us": after_ack, "reply_us": reply,
        }));
    }
    serde_json::Value::Array(out)
}

fn report(
    samples: &Samples,
    breakdown: &Breakdown,
    replies: &BTreeMap<(usize, String, String), String>,
    versions: serde_json::Value,
) -> Result<serde_json::Value> {
    let median = |size: usize, mode: &str, arm: &str| -> Result<(f64, Option<f64>)> {
        let s = samples
            .get(&(size, mode.to_owned(), arm.to_owned()))
            .filter(|s| !s.is_empty())
            .with_context(|| format!("no samples of {arm} {mode} at {size} bytes"))?;
        Ok(summary(s))
    };
    let cell = |(m, p95): (f64, Option<f64>)| match p95 {
        Some(p) => format!("{} (p95 {})", human_us(m), human_us(p)),
        None => human_us(m),
    };
    println!(
        "Rust host -> python -m perfopt_worker.demo -> reply, f32 arrays, medians (p95 from {P95_FROM} samples)"
    );
    println!(
        "{:>8} {:>5} {:>6} {:>26} {:>26} {:>8} {:>26} {:>26} {:>26} {:>10} {:>10} {:>13} {:>18}",
        "size",
        "mode",
        "n",
        "perfopt zero-copy",
        "perfopt gRPC",
        "gRPC/zc",
        "Python gRPC",
        "Python shm",
        "Python shm+XXH3",
        "py gRPC/zc",
        "py shm/zc",
        "py shm+X/zc",
        "reply via (zc/gRPC)"
    );
    let mut rows = Vec::new();
    for (size, repeats) in SIZES {
        for mode in MODES {
            let zc = median(size, mode, "perfopt_zero_copy")?;
            let grpc = median(size, mode, "perfopt_grpc")?;
            let py_grpc = median(size, mode, "python_grpc")?;
            let py_shm = median(size, mode, "python_shm")?;
            let py_shm_xxh3 = median(size, mode, "python_shm_xxh3")?;
            let via = |arm: &str| {
                replies
                    .get(&(size, mode.to_owned(), arm.to_owned()))
                    .cloned()
                    .unwrap_or_default()
            };
            let (via_zc, via_grpc) = (via("perfopt_zero_copy"), via("perfopt_grpc"));
            println!(
                "{:>8} {mode:>5} {repeats:>6} {:>26} {:>26} {:>7.2}x {:>26} {:>26} {:>26} {:>9.2}x {:>9.2}x {:>12.2}x {:>18}",
                human_size(size),
                cell(zc),
                cell(grpc),
                grpc.0 / zc.0,
                cell(py_grpc),
                cell(py_shm),
                cell(py_shm_xxh3),
                py_grpc.0 / zc.0,
                py_shm.0 / zc.0,
                py_shm_xxh3.0 / zc.0,
                format!("{via_zc}/{via_grpc}"),
            );
            let stats = |(m, p95): (f64, Option<f64>)| json!({"median_us": m, "p95_us": p95});
            rows.push(json!({
                "size": size,
                "mode": mode,
                "repeats": repeats,
                "perfopt_zero_copy": stats(zc),
                "perfopt_grpc": stats(grpc),
                "python_grpc": stats(py_grpc),
                "python_shm": stats(py_shm),
                "python_shm_xxh3": stats(py_shm_xxh3),
                "grpc_over_zero_copy": grpc.0 / zc.0,
                "python_grpc_over_zero_copy": py_grpc.0 / zc.0,
                "python_shm_over_zero_copy": py_shm.0 / zc.0,
                "python_shm_xxh3_over_zero_copy": py_shm_xxh3.0 / zc.0,
                "reply_via": {"perfopt_zero_copy": via_zc, "perfopt_grpc": via_grpc},
            }));
        }
    }
    let parts = print_breakdown(breakdown);
    let all: Vec<_> = samples
        .iter()
        .map(|((size, mode, arm), s)| json!({"size": size, "mode": mode, "arm": arm, "samples_us": s}))
        .collect();
    Ok(json!({
        "bench": "python_roundtrip",
        "warmups": WARMUPS,
        "baseline_versions": versions,
        "rows": rows,
        "breakdown": parts,
        "samples": all,
    }))
}

/// Where the JSON goes: `--json PATH` after `--`, else `PERFOPT_BENCH_JSON`.
fn json_path() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PERFOPT_BENCH_JSON").map(PathBuf::from))
}

fn main() -> Result<()> {
    // `cargo test` builds benches and runs them without `--bench`: measure only when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let python = venv_python();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut replies = BTreeMap::new();
    let mut breakdown = Breakdown::new();
    let mut samples = runtime.block_on(async {
        let optimizer = Optimizer::builder()
            .config(Config::from_toml_str(CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?)
            .probe(Arc::new(FixedProbe::default()))
            .build()?;
        let config = HostConfig {
            client: ClientConfig {
                call_timeout: Duration::from_secs(300),
                ..ClientConfig::default()
            },
            ..HostConfig::default()
        };
        let worker = WorkerCommand::new(python)
            .arg("-m")
            .arg("perfopt_worker.demo");
        let host = optimizer
            .host()
            .config(config)
            .spawn(worker, 1)
            .start()
            .await?;
        let samples = measure_perfopt(&host, &mut replies, &mut breakdown).await;
        let stats = host.stats();
        host.shutdown().await;
        let samples = samples?;
        if stats.restarts != 0 || stats.retried != 0 || stats.failed != 0 {
            bail!("the worker was not steady: {stats:?}");
        }
        Ok::<_, anyhow::Error>(samples)
    })?;
    let versions = measure_baselines(python, &mut samples)?;
    let doc = report(&samples, &breakdown, &replies, versions)?;
    if let Some(path) = json_path() {
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("samples and summary written to {}", path.display());
    }
    Ok(())
}
