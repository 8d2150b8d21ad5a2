//! `perfopt predict` and `perfopt plan`: learned cost estimates with intervals, and capacity forecasts.

use clap::Args;
use perf_core::cost::calibrated_estimates;
use perf_core::{
    CostCoefficients, HumanMicros, HumanSize, Method, Name, SystemState, TransferMetrics,
    TransferRequest, ZeroCopyAvailability,
};
use perfopt::StoredError;
use perfopt::predict::{
    Calibrated, CostModel, Evaluation, Forecast, LearnedOrCalibrated, Learner, ModelConfig,
    ModelSnapshot, PlanInput, SizeDistribution, WhatIf, evaluate, what_if,
};
use serde_json::{Value, json};

use crate::args::DataDirArg;
use crate::exit::Exit;

/// Most stored samples a command trains on.
const MAX_TRAINING_SAMPLES: usize = 1_000_000;

/// Arguments of `perfopt predict`.
#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    /// Payload size (e.g. 64MiB), 1 byte to 1 TiB.
    #[arg(long)]
    size: String,
    /// Only this method: grpc or zero_copy (both otherwise).
    #[arg(long)]
    method: Option<String>,
    /// The pool whose models are used.
    #[arg(long, default_value = "default")]
    pool: String,
    /// Samples a size class needs before its learned model is used (1 to 1000000).
    #[arg(long, default_value_t = ModelConfig::default().min_class_samples)]
    min_samples: u64,
    /// Most recent stored samples to train on (1 to 1000000).
    #[arg(long, default_value_t = 200_000)]
    limit: usize,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `perfopt plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Transfers per unit of time: 500/s, 30000/min, 2000000/h (or a plain number per second).
    #[arg(long)]
    rate: String,
    /// Sizes: mixed (1 KiB..64 MiB log-uniform), small, large, one size (64MiB), a range
    /// (1KiB..64MiB) or a list (4KiB,1MiB).
    #[arg(long, default_value = "mixed")]
    sizes: String,
    /// Worker processes (1 to 4096).
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// CPU cores (the machine's by default).
    #[arg(long)]
    cores: Option<f64>,
    /// Sizes at or above this go zero-copy.
    #[arg(long, default_value = "10MiB")]
    threshold: String,
    /// Shared memory the host may hold at once.
    #[arg(long, default_value = "1GiB")]
    shm_budget: String,
    /// What if the threshold were this instead.
    #[arg(long)]
    what_if_threshold: Option<String>,
    /// What if the shared-memory budget were this instead.
    #[arg(long)]
    what_if_shm_budget: Option<String>,
    /// The pool whose learned models are used where they are trusted.
    #[arg(long, default_value = "default")]
    pool: String,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints one JSON object.
    #[arg(long)]
    json: bool,
}

fn size_arg(flag: &str, text: &str) -> Result<u64, Exit> {
    match perf_core::parse_size(text) {
        Ok(0) => Err(Exit::bad_input(format_args!(
            "{flag} {text:?} is empty, expected at least 1 byte"
        ))),
        Ok(n) => Ok(n),
        Err(e) => Err(Exit::bad_input(format_args!("{flag}: {e}"))),
    }
}

fn pool_arg(text: &str) -> Result<Name, Exit> {
    Name::new(text).map_err(|e| Exit::bad_input(format_args!("invalid --pool: {e}")))
}

/// Reads `500/s`, `30000/min`, `2000000/h` or `500` as transfers per second.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, unit) = t.split_once('/').unwrap_or((t, "s"));
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid rate {text:?}, expected e.g. 500/s, 30000/min or 2000000/h"
            ));
        }
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        format!("invalid rate {text:?}, expected e.g. 500/s, 30000/min or 2000000/h")
    })?;
    let rate = n / per;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
        return Err(format!(
            "rate {text:?} is out of range, expected above 0 and at most 1000000000/s"
        ));
    }
    Ok(rate)
}

/// Models trained on the stored samples of `pool`, oldest first; an absent
/// store trains nothing and creates nothing.
struct Trained {
    learner: Learner,
    samples: Vec<TransferMetrics>,
    data_dir: String,
}

fn train(
    data: &DataDirArg,
    pool: Name,
    config: ModelConfig,
    limit: usize,
) -> Result<Trained, Exit> {
    let dir = data.resolve()?;
    let trained =
        perfopt::stored_cost_models(&dir.path, pool, config, limit).map_err(|e| match e {
            StoredError::Predict(e) => Exit::bad_input(e),
            e => Exit::failed(e),
        })?;
    Ok(Trained {
        learner: trained.learner,
        samples: trained.samples,
        data_dir: dir.path.display().to_string(),
    })
}

fn estimate_json(
    snap: &ModelSnapshot,
    pool: Name,
    method: Method,
    size: u64,
    costs: &CostCoefficients,
) -> Value {
    let learned = snap.estimate(pool, method, size).filter(|e| snap.usable(e));
    let seen = snap.estimate(pool, method, size);
    let class_samples = seen.map_or(0, |e| e.class_samples);
    let samples = seen.map_or(0, |e| e.samples);
    match learned {
        Some(e) => json!({
            "method": method.as_str(), "model": "learned",
            "latency_us": e.latency_us,
            "interval_us": e.interval_us.map(|(lo, hi)| [lo, hi]),
            "throughput_bps": e.throughput_bps,
            "memory_bytes": e.memory_bytes, "cpu_us": e.cpu_us,
            "class_samples": class_samples, "samples": samples,
            "confidence": e.confidence,
        }),
        None => {
            let (zc, grpc) = calibrated_estimates(
                costs,
                &TransferRequest::new(size),
                ZeroCopyAvailability::Pooled,
                &SystemState::IDLE,
            );
            let e = if method == Method::ZeroCopy { zc } else { grpc };
            json!({
                "method": method.as_str(), "model": "calibrated",
                "latency_us": e.latency_us, "interval_us": null,
                "throughput_bps": size as f64 / (e.latency_us / 1e6),
                "memory_bytes": e.memory_bytes, "cpu_us": e.cpu_us,
                "class_samples": class_samples, "samples": samples,
                "confidence": null,
            })
        }
    }
}

fn evaluation_json(e: &Evaluation) -> Value {
    json!({
        "train": e.train, "test": e.test, "predicted": e.predicted,
        "within_15pct": e.within_15pct, "coverage": e.coverage,
        "nominal_coverage": e.nominal_coverage,
        "median_relative_error": e.median_relative_error,
    })
}

/// Runs `perfopt predict`.
pub(crate) fn predict(args: &PredictArgs) -> Result<(), Exit> {
    let size = size_arg("--size", &args.size)?;
    let pool = pool_arg(&args.pool)?;
    let methods: Vec<Method> = match &args.method {
        Some(m) => vec![m.parse().map_err(Exit::bad_input)?],
        None => vec![Method::Grpc, Method::ZeroCopy],
    };
    if !(1..=MAX_TRAINING_SAMPLES).contains(&args.limit) {
        return Err(Exit::bad_input(format_args!(
            "--limit {} is out of range, expected 1 to {MAX_TRAINING_SAMPLES}",
            args.limit
        )));
    }
    let config = ModelConfig {
        min_class_samples: args.min_samples,
        ..ModelConfig::default()
    };
    config.validate().map_err(Exit::bad_input)?;
    let trained = train(&args.data, pool, config, args.limit)?;
    let snap = trained.learner.snapshot();
    let costs = CostCoefficients::default();
    let estimates: Vec<Value> = methods
        .iter()
        .map(|m| estimate_json(&snap, pool, *m, size, &costs))
        .collect();
    let evaluation = evaluate(&trained.samples, &config, 0.8).ok();
    if args.json {
        let out = json!({
            "size": size, "pool": pool.as_str(), "platform": snap.platform(),
            "data_dir": trained.data_dir, "stored_samples": trained.samples.len(),
            "model_version": snap.version(), "min_class_samples": config.min_class_samples,
            "estimates": estimates,
            "evaluation": evaluation.as_ref().map(evaluation_json),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} to pool {} on {}: {} stored samples in {}, model version {}",
        HumanSize(size),
        pool,
        snap.platform(),
        trained.samples.len(),
        trained.data_dir,
        snap.version()
    );
    for e in &estimates {
        let method: Method = e["method"]
            .as_str()
            .unwrap_or("grpc")
            .parse()
            .unwrap_or(Method::Grpc);
        let us = |v: &Value| HumanMicros(v.as_f64().unwrap_or(0.0)).to_string();
        let interval = match e["interval_us"].as_array() {
            Some(b) => format!("90 % interval {} .. {}", us(&b[0]), us(&b[1])),
            None => "no interval".to_string(),
        };
        let model = if e["model"] == "learned" {
            format!(
                "learned ({} samples in this size class, {} in all, confidence {:.2})",
                e["class_samples"],
                e["samples"],
                e["confidence"].as_f64().unwrap_or(0.0)
            )
        } else {
            format!(
                "calibrated coefficients (too few samples: {} in this size class, {} needed)",
                e["class_samples"], config.min_class_samples
            )
        };
        println!(
            "  {:<10} {:>9}  {:<34} {:>8.1} MiB/s  memory {:>10}  {model}",
            method.label(),
            us(&e["latency_us"]),
            interval,
            e["throughput_bps"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0),
            HumanSize(e["memory_bytes"].as_u64().unwrap_or(0)).to_string(),
        );
    }
    if let Some(e) = &evaluation {
        println!(
            "held-out check (oldest 80 % train, newest 20 % test, {} predicted): {:.0} % within 15 %, 90 % intervals covered {:.0} %, median error {:.1} %",
            e.predicted,
            e.within_15pct * 100.0,
            e.coverage * 100.0,
            e.median_relative_error * 100.0
        );
    }
    Ok(())
}

fn forecast_json(f: &Forecast) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("bottleneck_label".into(), json!(f.bottleneck.label()));
    }
    v
}

fn print_forecast(f: &Forecast) {
    let ms = |v: Option<f64>| {
        v.map_or_else(
            || "unbounded (saturated)".to_string(),
            |v| HumanMicros(v).to_string(),
        )
    };
    let u = &f.utilization;
    println!(
        "  latency p50 {}, p99 {} (a transfer waits for a worker with probability {:.1} %)",
        ms(f.latency_p50_us),
        ms(f.latency_p99_us),
        f.wait_probability * 100.0
    );
    println!(
        "  workers {:.0} % busy; CPU {:.2} cores ({:.0} %); shared memory held {} ({:.1} % of budget); memory copies {:.2} GB/s ({:.0} %); socket {:.2} GB/s ({:.0} %)",
        u.workers * 100.0,
        f.cpu_cores_busy,
        u.cpu * 100.0,
        HumanSize(f.shm_held_bytes as u64),
        u.shm_budget * 100.0,
        f.memory_copy_bps / 1e9,
        u.memory_bandwidth * 100.0,
        f.socket_bps / 1e9,
        u.socket * 100.0
    );
    println!(
        "  first bottleneck: {}, saturated from about {:.0}/s{}",
        f.bottleneck.label(),
        f.max_rate_per_s,
        if f.saturated {
            " (already saturated)"
        } else {
            ""
        }
    );
}

/// Runs `perfopt plan`.
pub(crate) fn plan_cmd(args: &PlanArgs) -> Result<(), Exit> {
    let rate = parse_rate(&args.rate).map_err(Exit::bad_input)?;
    let sizes = SizeDistribution::parse(&args.sizes).map_err(Exit::bad_input)?;
    let pool = pool_arg(&args.pool)?;
    let mut input = PlanInput::new(rate, sizes, args.workers);
    input.cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    input.threshold = size_arg("--threshold", &args.threshold)?;
    input.shm_budget = size_arg("--shm-budget", &args.shm_budget)?;
    let change = WhatIf {
        threshold: args
            .what_if_threshold
            .as_deref()
            .map(|t| size_arg("--what-if-threshold", t))
            .transpose()?,
        shm_budget: args
            .what_if_shm_budget
            .as_deref()
            .map(|t| size_arg("--what-if-shm-budget", t))
            .transpose()?,
        workers: None,
    };
    let trained = train(&args.data, pool, ModelConfig::default(), 200_000)?;
    let snap = trained.learner.snapshot();
    let costs = CostCoefficients::default();
    let learned = LearnedOrCalibrated {
        snapshot: &snap,
        pool,
        costs,
    };
    let model: &dyn CostModel = if trained.samples.is_empty() {
        &Calibrated(costs)
    } else {
        &learned
    };
    let report = what_if(&input, model, &change).map_err(Exit::bad_input)?;
    let changed = (change != WhatIf::default()).then_some(&report.changed);
    let base = &report.base;
    if args.json {
        let out = json!({
            "forecast": forecast_json(base),
            "what_if": changed.map(forecast_json),
            "stored_samples": trained.samples.len(),
            "data_dir": trained.data_dir,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{:.0} transfers/s of {} sizes on {} workers and {} cores, threshold {}, shared-memory budget {}; costs: {}",
        rate,
        args.sizes,
        input.workers,
        input.cores,
        HumanSize(input.threshold),
        HumanSize(input.shm_budget),
        if base.learned_share > 0.0 {
            format!(
                "learned models for {:.0} % of sizes, calibrated coefficients for the rest",
                base.learned_share * 100.0
            )
        } else {
            "calibrated coefficients".to_string()
        }
    );
    print_forecast(base);
    if let Some(c) = changed {
        println!(
            "what if threshold {} and shared-memory budget {}:",
            HumanSize(c.input.threshold),
            HumanSize(c.input.shm_budget)
        );
        print_forecast(c);
    }
    Ok(())
}
