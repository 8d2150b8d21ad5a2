//! `perfopt model`: the learned classifier's status, training and evaluation, and paired
//! measurements to train it on.

mod collect;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use perfopt::learn::{
    Classifier, Evaluation, LearnConfig, MODEL_NAME, PairedDataset, PairedSample, SHIPPED_DATASET,
    SHIPPED_DATASET_NAME,
};
use perfopt::{StoredClassifier, StoredError};
use serde_json::{Value, json};

use crate::args::DataDirArg;
use crate::clock::now;
use crate::exit::Exit;

/// `perfopt model ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Whether a trained model decides, its version, training and validation.
    Status(StatusArgs),
    /// Trains the classifier on paired evidence and saves it if it passes validation.
    Train(EvidenceCommandArgs),
    /// Held-out accuracy, confusion matrix and regret against an oracle.
    Evaluate(EvidenceCommandArgs),
    /// Measures both methods for each case against a real worker, with and without CPU load,
    /// and writes the paired dataset the classifier trains on.
    Collect(collect::CollectArgs),
}

/// Arguments of `perfopt model status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON.
    #[arg(long)]
    json: bool,
}

/// Where paired evidence comes from.
#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {
    /// A paired dataset written by `perfopt model collect` (instead of the shipped one).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also pairs the transfers recorded in the metrics store (same size class, both
    /// methods, close in time).
    #[arg(long)]
    stored: bool,
    /// Seed of the 80/20 train/validation split.
    #[arg(long, default_value_t = LearnConfig::default().seed)]
    seed: u64,
}

/// Arguments of `perfopt model train` and `perfopt model evaluate`.
#[derive(Debug, Args)]
pub(crate) struct EvidenceCommandArgs {
    #[command(flatten)]
    evidence: EvidenceArgs,
    #[command(flatten)]
    data: DataDirArg,
    /// Prints JSON (`accuracy` and `regret` as fractions).
    #[arg(long)]
    json: bool,
}

/// Runs `perfopt model ...`.
pub(crate) fn run(cmd: &ModelCommand) -> Result<(), Exit> {
    match cmd {
        ModelCommand::Status(args) => status(args),
        ModelCommand::Train(args) => train(args),
        ModelCommand::Evaluate(args) => evaluate(args),
        ModelCommand::Collect(args) => collect::run(args),
    }
}

/// The largest dataset file read, in bytes.
const MAX_DATASET_BYTES: u64 = 256 << 20;
/// The most stored transfers paired.
const MAX_STORED: usize = 1_000_000;

/// Paired evidence and where it came from.
struct Evidence {
    samples: Vec<PairedSample>,
    source: String,
}

fn evidence(args: &EvidenceArgs, data: &DataDirArg) -> Result<Evidence, Exit> {
    let (text, mut source) = match &args.data {
        Some(path) => {
            let text = perfopt::platform::read_regular_to_string(path, MAX_DATASET_BYTES)
                .map_err(|e| Exit::bad_input(format_args!("--data: {e}")))?;
            (text, format!("dataset {}", path.display()))
        }
        None => (
            SHIPPED_DATASET.to_string(),
            format!("shipped dataset {SHIPPED_DATASET_NAME}"),
        ),
    };
    let label = args
        .data
        .as_ref()
        .map_or(SHIPPED_DATASET_NAME.to_string(), |p| {
            p.display().to_string()
        });
    let (dataset, dropped) = PairedDataset::from_csv(&text)
        .map_err(|e| Exit::bad_input(format_args!("{label}: {e}")))?;
    if let Some(d) = dropped.first() {
        eprintln!(
            "warning: {label}: {} invalid row(s) skipped, first at line {}: {}",
            dropped.len(),
            d.line,
            d.why
        );
    }
    let mut samples = dataset.samples;
    if args.stored {
        let dir = data.resolve()?;
        let stored = perfopt::stored_pairs(&dir.path, MAX_STORED).map_err(Exit::failed)?;
        if stored.transfers > 0 {
            source += &format!(
                " and {} pairs from {} stored transfers",
                stored.samples.len(),
                stored.transfers
            );
        }
        samples.extend(stored.samples);
    }
    Ok(Evidence { samples, source })
}

fn evaluation_json(e: &Evaluation) -> Value {
    json!({
        "samples": e.samples,
        "accuracy": e.accuracy,
        "regret": e.regret,
        "decisive_samples": e.decisive_samples,
        "decisive_accuracy": e.decisive_accuracy,
        "confusion": {
            "labels": ["grpc", "zero_copy"],
            "rows_actual_columns_predicted": e.confusion,
        },
        "total_latency_us": {
            "model": e.model_us,
            "oracle": e.oracle_us,
            "always_grpc": e.always_grpc_us,
            "always_zero_copy": e.always_zero_copy_us,
        },
    })
}

fn print_evaluation(e: &Evaluation) {
    println!(
        "  held-out accuracy: {:.1} % of {} pairs (target 90 %, goal 98 %)",
        e.accuracy * 100.0,
        e.samples
    );
    println!(
        "  on the {} pairs whose methods differ by more than {:.0} %: {:.1} %",
        e.decisive_samples,
        perfopt::learn::DECISIVE * 100.0,
        e.decisive_accuracy * 100.0
    );
    println!(
        "  regret: {:.2} % extra latency against an oracle (target 5 %, goal 2 %)",
        e.regret * 100.0
    );
    let [[gg, gz], [zg, zz]] = e.confusion;
    println!("  confusion (rows: faster, columns: picked):");
    println!("    {:<12} {:>10} {:>10}", "", "grpc", "zero_copy");
    println!("    {:<12} {gg:>10} {gz:>10}", "grpc");
    println!("    {:<12} {zg:>10} {zz:>10}", "zero_copy");
    let rel = |x: f64| (x / e.oracle_us - 1.0) * 100.0;
    println!(
        "  total latency over the oracle: model {:+.2} %, always gRPC {:+.1} %, always zero-copy {:+.1} %",
        rel(e.model_us),
        rel(e.always_grpc_us),
        rel(e.always_zero_copy_us)
    );
}

/// The classifier saved in the data directory's store (see [`perfopt::stored_classifier`]).
fn stored_model(data: &DataDirArg) -> Result<StoredClassifier, Exit> {
    let dir = data.resolve()?;
    perfopt::stored_classifier(&dir.path).map_err(Exit::failed)
}

fn status(args: &StatusArgs) -> Result<(), Exit> {
    let dir = args.data.resolve()?;
    let StoredClassifier {
        model,
        problem,
        versions,
    } = stored_model(&args.data)?;
    let report = json!({
        "data_dir": dir.path.display().to_string(),
        "active": model.is_some(),
        "decides": if model.is_some() { "learned classifier" } else { "rules" },
        "version": model.as_ref().map(|m| m.version),
        "versions_kept": versions,
        "trained_at_ns": model.as_ref().map(|m| m.trained_at.as_nanos()),
        "trained_on": model.as_ref().map(|m| m.trained_on),
        "nodes": model.as_ref().map(Classifier::nodes),
        "depth": model.as_ref().map(Classifier::depth),
        "validation": model.as_ref().map(|m| evaluation_json(&m.validation)),
        "min_samples": LearnConfig::default().min_samples,
        "problem": problem,
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Exit::failed)?
        );
        return Ok(());
    }
    println!("model store: {}", dir.path.display());
    match &model {
        Some(m) => {
            println!(
                "  the learned classifier decides: version {} ({} versions kept), trained on {} paired samples, {} nodes, depth {}",
                m.version,
                versions,
                m.trained_on,
                m.nodes(),
                m.depth()
            );
            print_evaluation(&m.validation);
        }
        None => println!(
            "  no trained model: the rules decide (a model is trained from {} paired samples; `perfopt model train`)",
            LearnConfig::default().min_samples
        ),
    }
    if let Some(p) = problem {
        println!("  alert: the stored model was rejected: {p}");
    }
    Ok(())
}

fn train(args: &EvidenceCommandArgs) -> Result<(), Exit> {
    let evidence = evidence(&args.evidence, &args.data)?;
    let dir = args.data.resolve()?;
    let training = perfopt::train_classifier(&dir.path, &evidence.samples, args.evidence.seed)
        .map_err(|e| match e {
            StoredError::Learn(e) => Exit::failed(format_args!("{}: {e}", evidence.source)),
            e => Exit::failed(e),
        })?;
    let validation = training.validation;
    let outcome = training.event;
    let published = training.published.is_some();
    let version = training.published.unwrap_or(0);
    if args.json {
        let report = json!({
            "evidence": evidence.source,
            "paired_samples": evidence.samples.len(),
            "published": published,
            "version": published.then_some(version),
            "validation": evaluation_json(&validation),
            "event": outcome,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Exit::failed)?
        );
    } else {
        println!(
            "trained on {} ({} paired samples, 80 % train / 20 % held out)",
            evidence.source,
            evidence.samples.len()
        );
        print_evaluation(&validation);
        if published {
            println!(
                "  saved as {MODEL_NAME} v{version} in {}",
                dir.path.display()
            );
        }
    }
    if published {
        Ok(())
    } else {
        Err(Exit::failed(format_args!(
            "the model failed validation (needs {:.0} % held-out accuracy, at most {:.0} % regret, and no more latency than always gRPC or always zero-copy) and was not saved; the rules keep deciding",
            LearnConfig::default().min_accuracy * 100.0,
            LearnConfig::default().max_regret * 100.0
        )))
    }
}

fn evaluate(args: &EvidenceCommandArgs) -> Result<(), Exit> {
    let evidence = evidence(&args.evidence, &args.data)?;
    let dataset = PairedDataset {
        samples: evidence.samples,
    };
    let (train, test) = dataset.split(0.8, args.evidence.seed);
    if test.is_empty() {
        return Err(Exit::bad_input(format_args!(
            "{}: {} paired samples, too few to hold any out",
            evidence.source,
            dataset.samples.len()
        )));
    }
    let StoredClassifier { model, problem, .. } = stored_model(&args.data)?;
    let (model, which) = match model {
        Some(m) => {
            let which = format!("stored model v{}", m.version);
            (m, which)
        }
        None => {
            let m = Classifier::train(&train, &LearnConfig::default().tree, now())
                .map_err(|e| Exit::failed(format_args!("{}: {e}", evidence.source)))?;
            let which = format!(
                "no trained model stored; trained now on 80 % of the {} ({} pairs)",
                evidence.source,
                train.len()
            );
            (m, which)
        }
    };
    let e = model.evaluate(&test);
    if args.json {
        let mut report = evaluation_json(&e);
        report["model"] = json!(which);
        report["evidence"] = json!(evidence.source);
        report["held_out"] = json!(test.len());
        report["problem"] = json!(problem);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Exit::failed)?
        );
    } else {
        println!(
            "{which}; evaluated on the held-out 20 % of the {}",
            evidence.source
        );
        if let Some(p) = problem {
            println!("  alert: the stored model was rejected: {p}");
        }
        print_evaluation(&e);
    }
    Ok(())
}
