//! `perfopt decide`: one decision and its rationale, as text or JSON.

use std::path::PathBuf;

use clap::Args;
use perf_core::{
    Compression, DataType, Decision, DecisionContext, EstimateSource, Estimates, Format,
    HumanMicros, HumanSize, Locality, Name, SystemState, Timestamp, TransferRequest,
    ZeroCopyAvailability, parse_size,
};
use perfopt::{Optimizer, OptimizerError};
use serde_json::json;

use crate::exit::Exit;

/// Arguments of `perfopt decide`.
#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// Payload size: a byte count or a number with B, KiB, MiB, GiB (e.g. 64MiB).
    #[arg(long)]
    size: String,
    /// The worker pool (decided by `default` when omitted).
    #[arg(long, default_value = "default")]
    pool: String,
    /// A configuration file (the default configuration otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A calibration profile written by `perfopt bench`; its costs replace
    /// the configuration's.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// What the payload holds: bytes, tensor, table, text, image, records.
    #[arg(long, default_value = "bytes")]
    data_type: String,
    /// How it is encoded: raw, arrow, numpy, protobuf, json, msgpack, pickle, parquet.
    #[arg(long, default_value = "raw")]
    format: String,
    /// How it is compressed: none, lz4, zstd, gzip, snappy.
    #[arg(long, default_value = "none")]
    compression: String,
    /// The worker runs on another host.
    #[arg(long)]
    remote: bool,
    /// CPU utilisation to assume, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    cpu: f64,
    /// Memory use to assume, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    memory_used: f64,
    /// What shared memory can do: pooled, fresh, unavailable.
    #[arg(long, default_value = "pooled")]
    shm: String,
    /// Decides with the learned classifier saved in this data directory's store and its
    /// calibration profile, as a run with learning on would (the rules alone when no model
    /// validated there; the configuration's costs when it states its own).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Prints one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn fraction(name: &str, v: f64) -> Result<f64, Exit> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(Exit::bad_input(format_args!(
            "--{name} {v} is out of range, expected a fraction from 0 to 1"
        )))
    }
}

fn zero_copy(text: &str) -> Result<ZeroCopyAvailability, Exit> {
    match text {
        "pooled" => Ok(ZeroCopyAvailability::Pooled),
        "fresh" => Ok(ZeroCopyAvailability::Fresh),
        "unavailable" => Ok(ZeroCopyAvailability::Unavailable),
        _ => Err(Exit::bad_input(format_args!(
            "unknown --shm {text:?}, expected one of pooled, fresh, unavailable"
        ))),
    }
}

/// Builds the request and context the arguments describe.
fn request(args: &DecideArgs) -> Result<(TransferRequest, DecisionContext), Exit> {
    let bad = |e: &dyn std::fmt::Display| Exit::bad_input(e);
    let size = parse_size(&args.size).map_err(|e| bad(&e))?;
    let pool = Name::new(&args.pool)
        .map_err(|e| bad(&format_args!("invalid pool {:?}: {e}", args.pool)))?;
    let data_type: DataType = args.data_type.parse().map_err(|e| bad(&e))?;
    let format: Format = args.format.parse().map_err(|e| bad(&e))?;
    let compression: Compression = args.compression.parse().map_err(|e| bad(&e))?;
    let locality = if args.remote {
        Locality::Remote
    } else {
        Locality::SameHost
    };
    let request = TransferRequest::new(size)
        .with_pool(pool)
        .with_data_type(data_type)
        .with_format(format)
        .with_compression(compression)
        .with_locality(locality);
    let ctx = DecisionContext {
        now: Timestamp(0),
        system: SystemState {
            cpu_utilization: fraction("cpu", args.cpu)?,
            memory_used: fraction("memory-used", args.memory_used)?,
            ..SystemState::IDLE
        },
        zero_copy: zero_copy(&args.shm)?,
    };
    Ok((request, ctx))
}

/// Runs `perfopt decide`.
pub(crate) fn run(args: &DecideArgs) -> Result<(), Exit> {
    let mut config = crate::args::config(args.config.as_ref())?;
    if let Some(path) = &args.profile {
        config.costs =
            perfopt::load_profile(path).map_err(|e| Exit::bad_input(e.to_string().trim_end()))?;
    }
    let (request, ctx) = request(args)?;
    let dir = match &args.data_dir {
        Some(dir) => Some(
            crate::args::DataDirArg {
                data_dir: Some(dir.clone()),
            }
            .resolve()?
            .path,
        ),
        None => None,
    };
    // The data directory's calibration decides, as in a run, unless costs were given.
    if let Some(dir) = &dir
        && let Some(costs) = perfopt::data_dir_calibration(dir).map_err(Exit::failed)?
    {
        config = perf_core::calibrate::apply_calibration(config, &costs);
    }
    let mut builder = Optimizer::builder().config(config);
    if let Some(dir) = &dir {
        let stored = perfopt::stored_classifier(dir).map_err(Exit::failed)?;
        match (stored.model, stored.problem) {
            (Some(model), _) => {
                let classifier = perfopt::learn::LearnedClassifier::fixed(model);
                builder = builder.classifier(std::sync::Arc::new(classifier));
            }
            (None, Some(problem)) => {
                eprintln!("warning: the stored model is not used, the rules decide: {problem}")
            }
            (None, None) => {}
        }
    }
    let optimizer = builder.build().map_err(|e| match e {
        OptimizerError::Controller(_) => Exit::bad_input(e),
        e => Exit::failed(e),
    })?;
    let controller = optimizer.controller();
    if !controller.has_pool(request.pool) {
        let pools: Vec<String> = controller
            .config()
            .pools
            .keys()
            .map(|n| n.to_string())
            .collect();
        return Err(Exit::bad_input(format_args!(
            "unknown pool {:?}, expected one of {}",
            args.pool,
            pools.join(", ")
        )));
    }
    // The policy's own pick: exploration is not applied to a single preview.
    let decision = controller.preview(&request, &ctx);
    let estimates = decision
        .estimates
        .unwrap_or_else(|| controller.estimate(&request, &ctx));
    if args.json {
        println!("{}", to_json(&decision, &estimates));
    } else {
        print!("{}", to_text(&decision, &estimates));
    }
    Ok(())
}

/// The JSON object of one decision.
pub(crate) fn to_json(d: &Decision, e: &Estimates) -> serde_json::Value {
    json!({
        "method": d.method,
        "reason": d.reason.code(),
        "step": d.reason.step(),
        "rule": d.reason.rule_name(),
        "pool": d.pool,
        "pool_configured": d.pool_configured,
        "goal": d.goal,
        "size": d.size,
        "rationale": d.rationale().to_string(),
        "estimates": e,
        "estimates_used": d.estimates.is_some(),
        "threshold": d.threshold,
        "confidence": d.confidence,
        "propensity": d.propensity,
        "policy_version": d.policy_version,
    })
}

/// The text report of one decision.
pub(crate) fn to_text(d: &Decision, e: &Estimates) -> String {
    let mut out = format!("{}\n\n", d.rationale());
    out += &format!(
        "  decision   {} ({}), confidence {:.2}, policy v{}\n",
        d.method,
        d.reason.code(),
        d.confidence,
        d.policy_version
    );
    let t = d.threshold;
    out += &format!(
        "  threshold  {} = base {} x history {:.2} x resources {:.2}\n",
        HumanSize(t.effective),
        HumanSize(t.base),
        t.history,
        t.resources
    );
    let used = if d.estimates.is_some() {
        "used by this decision"
    } else {
        "for reference; this decision did not need them"
    };
    let source = match e.source {
        EstimateSource::Calibrated => "calibrated coefficients",
        EstimateSource::Predicted => "learned model",
    };
    out += &format!("\n  estimates ({source}, {used})\n");
    out += &format!("  {:<12} {:>12} {:>12}\n", "", "zero-copy", "grpc");
    type Cell = fn(&perf_core::MethodEstimate) -> String;
    let rows: [(&str, Cell); 7] = [
        ("latency", |m| HumanMicros(m.latency_us).to_string()),
        ("setup", |m| HumanMicros(m.setup_us).to_string()),
        ("transfer", |m| HumanMicros(m.transfer_us).to_string()),
        ("page faults", |m| HumanMicros(m.page_fault_us).to_string()),
        ("cleanup", |m| HumanMicros(m.cleanup_us).to_string()),
        ("memory", |m| HumanSize(m.memory_bytes).to_string()),
        ("cpu", |m| HumanMicros(m.cpu_us).to_string()),
    ];
    for (label, f) in rows {
        out += &format!("  {label:<12} {:>12} {:>12}\n", f(&e.zero_copy), f(&e.grpc));
    }
    out += &format!(
        "  goal-weighted gain of zero-copy: {:.1} %\n",
        e.zero_copy_gain * 100.0
    );
    out
}
