//! The `perfopt` binary as a user runs it: outputs, JSON fields and exit codes.

mod support;

use support::{json, perfopt, stderr, stdout};

use std::path::Path;

use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn decide_json_small_goes_grpc_and_huge_goes_zero_copy() {
    let small = json(&["decide", "--size", "4KiB", "--json"]);
    assert_eq!(small["method"], "grpc");
    assert_eq!(small["reason"], "quick_path.below_floor");
    assert_eq!(small["pool"], "default");
    assert_eq!(small["goal"], "minimize_latency");
    assert!(
        small["rationale"]
            .as_str()
            .unwrap()
            .starts_with("gRPC: 4.0 KiB")
    );
    assert!(
        small["estimates"]["zero_copy"]["latency_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(small["estimates"]["grpc"]["latency_us"].as_f64().unwrap() > 0.0);

    let huge = json(&["decide", "--size", "2GiB", "--json"]);
    assert_eq!(huge["method"], "zero_copy");
    assert_eq!(huge["reason"], "quick_path.above_ceiling");
    assert!(
        huge["rationale"]
            .as_str()
            .unwrap()
            .starts_with("zero-copy: 2.0 GiB")
    );
}

#[test]
fn decide_text_explains_the_cost_analysis() {
    let o = perfopt(&["decide", "--size", "64MiB"]);
    assert!(o.status.success());
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn decide_follows_load_locality_and_shared_memory() {
    // High CPU halves the threshold, so 6 MiB flips to zero-copy.
    let idle = json(&["decide", "--size", "6MiB", "--json"]);
    let busy = json(&["decide", "--size", "6MiB", "--cpu", "0.95", "--json"]);
    assert_eq!(idle["method"], "grpc");
    assert_eq!(busy["method"], "zero_copy");
    assert_eq!(busy["threshold"]["resources"], 0.5);
    let remote = json(&["decide", "--size", "512MiB", "--remote", "--json"]);
    assert_eq!(remote["reason"], "forced.remote_worker");
    let no_shm = json(&[
        "decide",
        "--size",
        "512MiB",
        "--shm",
        "unavailable",
        "--json",
    ]);
    assert_eq!(no_shm["reason"], "forced.zero_copy_unavailable");
}

#[test]
fn decide_applies_rules_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.toml",
        "version = 1\n[pools.ml]\ngoal = \"balanced\"\n\
         [[pools.ml.rules]]\nname = \"json\"\npriority = 3\nformats = [\"json\"]\nmethod = \"grpc\"\n",
    );
    let d = json(&[
        "decide", "--size", "300MiB", "--pool", "ml", "--format", "json", "--config", &cfg,
        "--json",
    ]);
    assert_eq!(d["method"], "grpc");
    assert_eq!(d["reason"], "rule.user_rule");
    assert_eq!(d["rule"], "json");
    assert_eq!(d["goal"], "balanced");
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["decide", "--size", "12 parsecs"], "invalid size"),
        (&["decide", "--size", "2TiB"], "too large"),
        (&["decide", "--size=-5MiB"], "at least 0 bytes"),
        (
            &["decide", "--size", "1MiB", "--pool", "nope"],
            "unknown pool \"nope\"",
        ),
        (
            &["decide", "--size", "1MiB", "--pool", "a/b"],
            "invalid pool",
        ),
        (
            &["decide", "--size", "1MiB", "--data-type", "matrix"],
            "unknown data type",
        ),
        (
            &["decide", "--size", "1MiB", "--format", "xml"],
            "unknown format",
        ),
        (
            &["decide", "--size", "1MiB", "--cpu", "3"],
            "--cpu 3 is out of range",
        ),
        (
            &["decide", "--size", "1MiB", "--shm", "maybe"],
            "unknown --shm",
        ),
        (
            &[
                "decide",
                "--size",
                "1MiB",
                "--config",
                "/nonexistent/p.toml",
            ],
            "cannot read",
        ),
    ];
    for (args, needle) in cases {
        let o = perfopt(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn the_default_config_is_valid_and_commented() {
    let o = perfopt(&["config", "default"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.lines().filter(|l| l.starts_with('#')).count() > 40);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "default.toml", &text);
    let v = perfopt(&["config", "validate", &path]);
    assert_eq!((v.status.code(), stdout(&v).as_str()), (Some(0), "ok\n"));
}

#[test]
fn validate_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.toml",
        "version = 1\ncolour = \"blue\"\n[defaults]\ngoal = \"fastest\"\nfloor = -1\n\
         [pools.ml]\nthreshold = \"2TiB\"\nexploration_rate = 0.9\nlearning = \"yes\"\n",
    );
    let o = perfopt(&["config", "validate", &path]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    let err = stderr(&o).replace(&path, "[FILE]");
    assert!(err.lines().count() >= 6, "{err}");
    insta::assert_snapshot!(err);

    let empty = write(dir.path(), "empty.toml", "");
    let o = perfopt(&["config", "validate", &empty]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("version: got (missing)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn diff_shows_changed_keys_and_flipped_decisions_without_applying() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.toml", "version = 1\n[pools.ml]\n");
    let new = write(
        dir.path(),
        "new.toml",
        "version = 1\n[pools.ml]\nthreshold = \"3MiB\"\n[pools.batch]\ngoal = \"minimize_memory\"\n",
    );
    let o = perfopt(&["config", "diff", &old, &new]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));

    let d = json(&["config", "diff", &old, &new, "--json"]);
    let flips = d["flips"].as_array().unwrap();
    let sizes: Vec<u64> = flips.iter().map(|f| f["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [4 << 20, 8 << 20]);
    assert!(
        flips
            .iter()
            .all(|f| f["pool"] == "ml" && f["new"]["method"] == "zero_copy")
    );
    assert_eq!(d["samples"], 3 * 21);

    let same = json(&["config", "diff", &old, &old, "--json"]);
    assert!(same["keys"].as_array().unwrap().is_empty());
    assert!(same["flips"].as_array().unwrap().is_empty());
}

#[test]
fn decide_runs_on_a_calibration_profile() {
    let dir = tempfile::tempdir().unwrap();
    // A profile measured on a machine where a gRPC call costs 40 ms.
    let costs = perf_core::CostCoefficients {
        grpc_call_us: 40_000.0,
        ..Default::default()
    };
    let profile = write(
        dir.path(),
        "p.toml",
        &costs.to_profile_toml(Default::default()),
    );
    let base = json(&["decide", "--size", "16MiB", "--json"]);
    let slow = json(&["decide", "--size", "16MiB", "--profile", &profile, "--json"]);
    let grpc = |v: &Value| v["estimates"]["grpc"]["latency_us"].as_f64().unwrap();
    assert!(grpc(&slow) > grpc(&base) + 39_000.0, "{slow}");
    let o = perfopt(&[
        "decide",
        "--size",
        "16MiB",
        "--profile",
        "/nonexistent.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_drives_real_transfers_through_workers_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/perfopt.toml");
    let o = perfopt(&[
        "run",
        "--duration",
        "1500ms",
        "--workers",
        "1",
        "--in-flight",
        "40",
        "--config",
        config,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("perfopt run: "), "{}", stdout(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let transfers = r["transfers"].as_u64().unwrap();
    assert!(transfers > 0);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["retried"], 0);
    // Forty callers, room for sixteen on the one worker: the rest wait, none fails.
    assert_eq!(r["in_flight"]["submitted"], 40, "{r}");
    assert_eq!(r["in_flight"]["capacity"], 16, "{r}");
    assert!(r["in_flight"]["peak"].as_u64().unwrap() <= 16, "{r}");
    assert!(r["queued_us"]["p99"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["failed_attempts"], serde_json::json!({}), "{r}");
    let sum = |v: &Value| -> u64 {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum(&r["by_method"]), transfers);
    assert_eq!(sum(&r["by_pool"]), transfers);
    // Every transfer fed the learned cost models, which published at least one
    // version, and the learning engine, which saw every one.
    assert!(
        r["learning"]["cost_model_version"].as_u64().unwrap() >= 1,
        "{r}"
    );
    assert_eq!(r["learning"]["dropped"], 0);
    assert_eq!(r["learning"]["engine"]["observed"], transfers);
    for pool in r["by_pool"].as_object().unwrap().keys() {
        assert!(
            ["default", "ml", "batch"].contains(&pool.as_str()),
            "{pool}"
        );
    }
    for method in r["by_method"].as_object().unwrap().keys() {
        assert!(["grpc", "zero_copy"].contains(&method.as_str()), "{method}");
    }

    let bad = perfopt(&["run", "--duration", "forever"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = perfopt(&["run", "--workers", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = perfopt(&["run", "--in-flight", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--in-flight 0 is out of range, expected 1 to 100000"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn the_store_commands_read_what_a_run_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    let report = dir.path().join("run.json");
    let o = perfopt(&[
        "run",
        "--duration",
        "1s",
        "--workers",
        "1",
        "--data-dir",
        data,
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let transfers = run["transfers"].as_u64().unwrap();
    assert_eq!(run["store"]["committed"].as_u64(), Some(transfers), "{run}");

    let stats = json(&["stats", "--data-dir", data, "--granularity", "1s", "--json"]);
    assert_eq!(stats["total_transfers"].as_u64(), Some(transfers));
    let buckets = stats["buckets"].as_array().unwrap();
    let counted: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, transfers);
    for b in buckets {
        for metric in [
            "latency_us",
            "throughput_bps",
            "decision_ns",
            "memory_bytes",
        ] {
            let m = &b[metric];
            assert!(
                m["p50"].as_f64().unwrap() <= m["p999"].as_f64().unwrap(),
                "{b}"
            );
        }
    }

    let profiled = json(&["stats", "--data-dir", data, "--profile", "--json"]);
    assert_eq!(profiled["profile"]["samples"].as_u64(), Some(transfers));
    let by_size = profiled["profile"]["by_size"].as_array().unwrap();
    let in_sizes: u64 = by_size.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(in_sizes, transfers);
    assert_eq!(run["store"]["cleaned_rows"], 0);

    let jsonl = perfopt(&["export", "--data-dir", data, "--since", "1h"]);
    assert!(jsonl.status.success());
    let lines: Vec<Value> = stdout(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, transfers);
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["started_at"].as_u64() <= w[1]["started_at"].as_u64())
    );
    let csv = perfopt(&["export", "--data-dir", data, "--format", "csv"]);
    let text = stdout(&csv);
    assert!(text.starts_with("started_at_ns,pool,method,"));
    assert_eq!(text.lines().count() as u64, transfers + 1);

    // Keeping 1 minute of samples removes nothing that a run just wrote.
    let kept = json(&[
        "cleanup",
        "--data-dir",
        data,
        "--keep-samples",
        "1m",
        "--json",
    ]);
    assert_eq!(kept["total"], 0);
    let bad = perfopt(&["cleanup", "--data-dir", data, "--keep-samples", "forever"]);
    assert_eq!(bad.status.code(), Some(2));

    let m = perfopt(&["migrate", "--data-dir", data]);
    assert!(stdout(&m).contains("nothing to do"), "{}", stdout(&m));
    let d = perfopt(&["doctor", "--data-dir", data]);
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
    assert!(
        stdout(&d).contains(&format!("{transfers} samples")),
        "{}",
        stdout(&d)
    );

    let bad = perfopt(&["stats", "--data-dir", data, "--granularity", "2h"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = perfopt(&["stats", "--data-dir", data, "--method", "carrier-pigeon"]);
    assert_eq!(bad.status.code(), Some(2));

    // A damaged store is reported by doctor, never a panic.
    let file = std::path::Path::new(data).join("metrics.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    bytes.truncate(len / 3);
    std::fs::write(&file, bytes).unwrap();
    let d = perfopt(&["doctor", "--data-dir", data]);
    assert_eq!(d.status.code(), Some(1), "{}", stdout(&d));
    assert!(stderr(&d).contains("metrics store"), "{}", stderr(&d));
}
