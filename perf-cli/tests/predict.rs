//! `perfopt predict` and `perfopt plan` as a user runs them: calibrated fallback, learned models, exit codes.

mod support;

use support::{json, perfopt, stderr};

#[test]
fn predict_on_an_empty_data_dir_falls_back_to_calibrated_coefficients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = json(&["predict", "--size", "64MiB", "--data-dir", d, "--json"]);
    assert_eq!(out["size"], 64u64 << 20);
    assert_eq!(out["stored_samples"], 0);
    assert_eq!(out["model_version"], 0);
    assert!(out["evaluation"].is_null());
    let estimates = out["estimates"].as_array().unwrap();
    assert_eq!(estimates.len(), 2);
    for e in estimates {
        assert_eq!(e["model"], "calibrated", "{e}");
        assert!(e["interval_us"].is_null());
        assert_eq!(e["class_samples"], 0);
    }
    // The default coefficients reproduce the measured medians (DESIGN.md):
    // gRPC 71-76 ms and pooled zero-copy about 3.1 ms at 64 MiB.
    let grpc = estimates[0]["latency_us"].as_f64().unwrap();
    let zc = estimates[1]["latency_us"].as_f64().unwrap();
    assert!((50_000.0..100_000.0).contains(&grpc), "{grpc}");
    assert!((2_000.0..5_000.0).contains(&zc), "{zc}");
    // Reading creates no store.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let o = perfopt(&[
        "predict",
        "--size",
        "1MiB",
        "--method",
        "zero_copy",
        "--data-dir",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("zero-copy") && !text.contains("gRPC"),
        "{text}"
    );
    assert!(
        text.contains("calibrated coefficients (too few samples"),
        "{text}"
    );
}

#[test]
fn plan_forecasts_latency_resources_and_a_bottleneck() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [
        "plan",
        "--rate",
        "500/s",
        "--sizes",
        "mixed",
        "--workers",
        "4",
        "--cores",
        "2",
        "--what-if-threshold",
        "1MiB",
        "--data-dir",
        d,
        "--json",
    ];
    let out = json(&args);
    let f = &out["forecast"];
    assert_eq!(f["input"]["rate_per_s"], 500.0);
    assert_eq!(f["input"]["workers"], 4);
    assert_eq!(f["learned_share"], 0.0);
    let (p50, p99) = (
        f["latency_p50_us"].as_f64().unwrap(),
        f["latency_p99_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 < p99, "{f}");
    assert!(f["cpu_cores_busy"].as_f64().unwrap() > 0.0);
    assert!(f["shm_held_bytes"].as_f64().unwrap() > 0.0);
    let names = ["workers", "cpu", "memory_bandwidth", "shm_budget", "socket"];
    assert!(names.contains(&f["bottleneck"].as_str().unwrap()), "{f}");
    let w = &out["what_if"];
    assert_eq!(w["input"]["threshold"], 1u64 << 20);
    assert!(w["zero_copy_share"].as_f64() > f["zero_copy_share"].as_f64());
    assert_eq!(json(&args), out, "a seeded forecast is reproducible");

    let o = perfopt(&[
        "plan",
        "--rate",
        "1000000/s",
        "--sizes",
        "large",
        "--data-dir",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("first bottleneck:") && text.contains("saturated"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: [&[&str]; 10] = [
        &["predict", "--size", "0"],
        &["predict", "--size", "2TiB"],
        &["predict", "--size", "1MiB", "--method", "tcp"],
        &["predict", "--size", "1MiB", "--pool", "bad pool"],
        &["predict", "--size", "1MiB", "--min-samples", "0"],
        &["plan", "--rate", "0/s"],
        &["plan", "--rate", "fast"],
        &["plan", "--rate", "500/s", "--sizes", "huge"],
        &["plan", "--rate", "500/s", "--workers", "0"],
        &["plan", "--rate", "500/s", "--threshold", "ten"],
    ];
    for case in cases {
        let mut args = case.to_vec();
        args.extend(["--data-dir", d]);
        let o = perfopt(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{case:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{case:?}: {err}");
        assert!(err.starts_with("error: "), "{case:?}: {err}");
    }
}

/// After a short real run the stored samples train a model; the output says
/// learned exactly when the size class has enough samples, and never depends
/// on how fast this machine is.
#[test]
fn predict_learns_from_a_short_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = perfopt(&[
        "run",
        "--duration",
        "1500ms",
        "--workers",
        "1",
        "--workload",
        "small",
        "--data-dir",
        d,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let exported = perfopt(&["export", "--data-dir", d]);
    let stored = String::from_utf8(exported.stdout).unwrap().lines().count();
    assert!(stored > 0);

    let min = 5;
    let out = json(&[
        "predict",
        "--size",
        "256KiB",
        "--method",
        "grpc",
        "--min-samples",
        "5",
        "--data-dir",
        d,
        "--json",
    ]);
    assert_eq!(out["stored_samples"], stored);
    assert_eq!(out["model_version"], 1, "one batch, one version");
    let e = &out["estimates"][0];
    let class = e["class_samples"].as_u64().unwrap();
    let all = e["samples"].as_u64().unwrap();
    // Small transfers all go by gRPC; only failed ones would be left out.
    assert!(all as usize <= stored && all > 0, "{e}");
    if e["model"] == "learned" {
        assert!(class >= min);
        let b = e["interval_us"].as_array().unwrap();
        let (lo, hi) = (b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
        let latency = e["latency_us"].as_f64().unwrap();
        assert!(lo <= latency && latency <= hi, "{e}");
        let c = e["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c));
    } else {
        assert_eq!(e["model"], "calibrated");
        // Too few samples to learn from: a class under the minimum, or too
        // few residuals for an interval.
        assert!(class < min || all < 100, "{e}");
    }
    if stored >= 10 {
        let ev = &out["evaluation"];
        for key in ["within_15pct", "coverage", "median_relative_error"] {
            assert!(ev[key].as_f64().unwrap() >= 0.0, "{ev}");
        }
    }
}
