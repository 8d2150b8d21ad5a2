//! `perfopt calibrate` as a user runs it: a real worker and burner processes measure this
//! machine into a temporary data directory, and the `perfopt run` that follows decides with the
//! classifier it trained from its first transfer; a run on a directory without calibration
//! says so.

mod support;

use perfopt::learn::MODEL_NAME;
use serde_json::Value;

use support::{json, perfopt, stderr, stdout};

/// A short calibration of sizes where zero-copy wins clearly, so that a few seconds of rows
/// (in a debug build, on a shared machine) can validate.
const QUICK: [&str; 6] = [
    "--budget",
    "12s",
    "--sizes",
    "512KiB..4MiB",
    "--per-case",
    "3",
];

/// How many times the quick calibration is tried: a dozen seconds of rows measured on a shared
/// machine may fail validation, which is reported and saves nothing, and is then measured again.
const ATTEMPTS: usize = 3;

/// The `perfopt run ... --json -` report that ends standard output.
fn run_report(text: &str) -> Value {
    let start = text.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..]).unwrap()
}

#[test]
fn a_calibrated_data_directory_decides_with_its_model_from_the_first_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut args = vec!["calibrate", "--data-dir", data];
    args.extend(QUICK);
    let mut calibrated = perfopt(&args);
    for _ in 1..ATTEMPTS {
        if calibrated.status.success() || !stderr(&calibrated).contains("failed validation") {
            break;
        }
        assert!(!dir.path().join(perfopt::CALIBRATION_FILE).exists());
        calibrated = perfopt(&args);
    }
    let out = stdout(&calibrated);
    assert!(
        calibrated.status.success(),
        "{out}\n{}",
        stderr(&calibrated)
    );
    for what in [
        "idle",
        "cpu",
        "fitted crossover",
        "held-out accuracy",
        "saved:",
    ] {
        assert!(out.contains(what), "{what}: {out}");
    }

    // The profile is written and loads as one.
    let profile = dir.path().join(perfopt::CALIBRATION_FILE);
    let costs = perfopt::load_profile(&profile).unwrap();
    assert_ne!(costs, perfopt::core::CostCoefficients::default());
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("perfopt calibrate"), "{text}");

    // The model is in the store, validated.
    let status = json(&["model", "status", "--json", "--data-dir", data]);
    assert_eq!(status["active"], true, "{status}");
    let version = status["version"].as_u64().unwrap();
    assert!(out.contains(&format!("{MODEL_NAME} v{version}")), "{out}");
    assert!(status["validation"]["accuracy"].as_f64().unwrap() >= 0.75);

    // `decide` on the directory estimates with the profile's coefficients.
    let decide = |extra: &[&str]| {
        let mut args = vec!["decide", "--size", "64MiB", "--json"];
        args.extend(extra);
        json(&args)["estimates"].clone()
    };
    assert_ne!(decide(&["--data-dir", data]), decide(&[]));

    // A short run decides with that model from the start: it is loaded before the first
    // transfer, nothing is trained during the run, and learned picks decide transfers.
    let run = perfopt(&[
        "run",
        "--duration",
        "2s",
        "--workers",
        "1",
        "--learn-min-samples",
        "1000000",
        "--json",
        "-",
        "--data-dir",
        data,
    ]);
    let text = stdout(&run);
    assert!(run.status.success(), "{text}\n{}", stderr(&run));
    assert!(
        !stderr(&run).contains("holds no calibration"),
        "{}",
        stderr(&run)
    );
    let report = run_report(&text);
    let learning = &report["learning"];
    assert_eq!(learning["engine"]["active"], true, "{learning}");
    assert_eq!(learning["engine"]["version"].as_u64(), Some(version));
    assert_eq!(learning["engine"]["trainings"], 0, "{learning}");
    let first = &learning["events"][0];
    assert_eq!(first["kind"], "loaded", "{learning}");
    assert_eq!(first["version"].as_u64(), Some(version));
    assert_eq!(first["observed"], 0, "{learning}");
    let learned: u64 = report["by_reason"]["cost_analysis.learned_classifier"]
        .as_object()
        .map_or(0, |methods| {
            methods.values().filter_map(Value::as_u64).sum()
        });
    assert!(learned > 0, "{}", report["by_reason"]);
    assert!(
        text.contains(&format!("classifier v{version} decides")),
        "{text}"
    );
}

#[test]
fn a_run_without_calibration_says_so_once_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = perfopt(&[
        "run",
        "--duration",
        "300ms",
        "--workers",
        "1",
        "--data-dir",
        data,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let err = stderr(&run);
    assert_eq!(err.matches("holds no calibration").count(), 1, "{err}");
    assert!(
        err.contains(&format!("perfopt calibrate --data-dir {data}")) && err.contains("60 s"),
        "{err}"
    );
    assert!(stdout(&run).contains("no model yet"), "{}", stdout(&run));
    assert!(!dir.path().join(perfopt::CALIBRATION_FILE).exists());
}

#[test]
fn bad_budgets_are_refused_before_anything_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (budget, why) in [("1s", "out of range"), ("soon", "--budget")] {
        let o = perfopt(&["calibrate", "--budget", budget, "--data-dir", data]);
        assert_eq!(o.status.code(), Some(2), "{budget}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{budget}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
