//! `perfopt suite` as `cargo xtask perf` runs it: a small scenario file of every kind that runs
//! without root, real worker processes, the results JSON every series and figure is read from,
//! and bad scenario files and names refused before anything runs.

mod support;

use support::perfopt;

use serde_json::Value;

const SMALL: &str = r#"
version = 1

[[scenario]]
name = "sizes"
kind = "methods"
description = "two sizes"
sets = ["quick"]
sizes = ["1KiB", "64KiB"]
methods = ["memcpy", "zero_copy", "zero_copy_loaned", "grpc"]
repeats = 3

[[scenario]]
name = "concurrency"
kind = "concurrency"
description = "two levels"
sets = ["quick"]
levels = [1, 64]
transfers = 200
min_size = "1KiB"
max_size = "64KiB"
data_types = ["tensor", "records"]
workers = 2
window_ms = 50

[[scenario]]
name = "policies"
kind = "policies"
description = "four arms"
sets = ["quick"]
transfers = 10
min_size = "1KiB"
max_size = "1MiB"
workers = 1

[[scenario]]
name = "recording"
kind = "recording"
description = "records"
sets = ["quick"]
records = 300
transfers = 10

[[scenario]]
name = "decision"
kind = "decision"
description = "decisions"
sets = ["quick", "full"]
decisions = 2000

[[scenario]]
name = "cpu_saturation"
kind = "cpu_saturation"
description = "idle and loaded"
sets = ["full"]
transfers = 10
min_size = "1KiB"
max_size = "1MiB"
settle_ms = 100
pause_ms = 1
"#;

fn series<'a>(scenario: &'a Value, id: &str) -> &'a Value {
    scenario["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no series {id} in {}", scenario["name"]))
}

#[test]
fn a_small_suite_writes_every_series_with_its_counts_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenarios.toml");
    std::fs::write(&file, SMALL).unwrap();
    let out = dir.path().join("results.json");
    let o = perfopt(&[
        "suite",
        "--scenarios",
        file.to_str().unwrap(),
        "--set",
        "quick",
        "--json",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["schema"], 1);
    assert_eq!(r["set"], "quick");
    assert_eq!(r["injected_delay_us"], 0);
    for key in ["cpu_model", "cores", "kernel", "memory_bytes"] {
        assert!(!r["machine"][key].is_null(), "machine.{key}");
    }
    let names: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // The quick set only, in file order.
    assert_eq!(
        names,
        ["sizes", "concurrency", "policies", "recording", "decision"]
    );
    let s = &r["scenarios"];

    for method in ["memcpy", "zero_copy", "zero_copy_loaned", "grpc"] {
        for size in ["1KiB", "64KiB"] {
            let x = series(&s[0], &format!("{method}@{size}"));
            assert_eq!(x["unit"], "us");
            assert_eq!(x["transfers"], 3, "{method}@{size}");
            assert_eq!(x["samples"].as_array().unwrap().len(), 3, "{method}@{size}");
            let sum = &x["summary"];
            assert!(sum["p50"].as_f64().unwrap() > 0.0);
            assert!(sum["p99"].as_f64().unwrap() >= sum["p50"].as_f64().unwrap());
            assert_eq!(x["fallbacks"], 0, "{method}@{size}");
        }
    }
    // Workers report their CPU; memcpy has no worker.
    assert!(
        series(&s[0], "grpc@64KiB")["cpu_workers_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(series(&s[0], "memcpy@64KiB")["cpu_workers_s"].is_null());

    for level in [1, 64] {
        let x = series(&s[1], &format!("in_flight={level}"));
        assert_eq!(x["unit"], "mib_s");
        assert_eq!(x["in_flight"], level);
        assert_eq!(x["transfers"], 200);
        assert_eq!(x["failed"], 0);
        assert_eq!(x["lost"], 0);
        assert_eq!(x["latency_us"]["count"], 200);
        assert!(x["throughput_mib_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(s[1]["figures"]["lost"], 0);
    assert_eq!(s[1]["figures"]["failed"], 0);

    for arm in ["engine", "threshold", "zero_copy", "grpc"] {
        let x = series(&s[2], &format!("policy={arm}"));
        assert_eq!(x["transfers"], 10, "{arm}");
        assert_eq!(x["samples"].as_array().unwrap().len(), 10, "{arm}");
    }
    assert_eq!(s[2]["figures"]["lost"], 0);

    assert_eq!(series(&s[3], "record")["transfers"], 300);
    assert_eq!(series(&s[3], "transfer@1MiB")["transfers"], 10);
    assert_eq!(s[3]["figures"]["store_recorded"], 300);

    for id in ["decide_quick", "decide", "decide_two_threads"] {
        assert_eq!(series(&s[4], id)["summary"]["count"], 2000, "{id}");
    }
}

#[test]
fn bad_files_and_names_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenarios.toml");
    std::fs::write(&file, SMALL).unwrap();
    let out = dir.path().join("results.json");
    let run = |args: &[&str]| {
        let mut all = vec![
            "suite",
            "--scenarios",
            file.to_str().unwrap(),
            "--json",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let o = perfopt(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&["--only", "nope"]);
    assert!(err.contains("--only nope: no such scenario"), "{err}");
    let err = run(&["--set", "full", "--only", "sizes"]);
    assert!(err.contains("not in the full set"), "{err}");
    let err = run(&["--set", "stress"]);
    assert!(err.contains("no scenario is in the stress set"), "{err}");
    std::fs::write(&file, SMALL.replace("repeats = 3", "repeats = 0")).unwrap();
    let err = run(&[]);
    assert!(
        err.contains("scenario[0] (sizes): repeats = 0 is out of range"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written for a refused run");
}
