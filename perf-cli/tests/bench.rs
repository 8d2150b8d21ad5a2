//! `perfopt bench` as a user runs it: a real worker process, the JSON rows, the profile, bad arguments.

mod support;

use support::perfopt;

use perf_core::Config;
use serde_json::Value;

/// Every row's method, and how it is verified.
const METHODS: [(&str, &str); 10] = [
    ("grpc", "checksum"),
    ("zero_copy_pooled", "checksum"),
    ("zero_copy_pooled_sampled", "sampled"),
    ("zero_copy_pooled_none", "none"),
    ("zero_copy_loan", "checksum"),
    ("zero_copy_loan_none", "none"),
    ("notify", "none"),
    ("notify_after_write", "none"),
    ("zero_copy_fresh", "checksum"),
    ("memcpy", ""),
];

#[test]
fn a_small_bench_measures_every_size_and_method_and_writes_a_valid_profile() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let profile_path = dir.path().join("profile.toml");
    std::fs::write(&profile_path, "an older profile").unwrap();
    let o = perfopt(&[
        "bench",
        "--sizes",
        "1KiB..64KiB",
        "--repeats",
        "2",
        "--json",
        json_path.to_str().unwrap(),
        "--write-profile",
        profile_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("zero_copy_pooled"), "{stdout}");
    assert!(stdout.contains("crossover"), "{stdout}");
    assert!(
        stdout.contains("zero_copy_pooled vs grpc at 1.0 KiB"),
        "{stdout}"
    );
    // An existing profile is replaced, and the user is told.
    assert!(stderr.contains("replaced calibration profile"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let sizes: Vec<u64> = (0..7).map(|i| 1024 << i).collect();
    assert_eq!(rows.len(), sizes.len() * METHODS.len());
    for size in &sizes {
        for (method, verify) in METHODS {
            let row = rows
                .iter()
                .find(|r| r["size"] == *size && r["method"] == method)
                .unwrap_or_else(|| panic!("no row for {method} at {size}"));
            for field in ["median_us", "p99_us"] {
                let v = row[field].as_f64().unwrap();
                assert!(v > 0.0, "{method} at {size}: {field} = {v}");
            }
            // A notification carries 1 KiB whatever the size beside it: no throughput.
            let throughput = row["throughput_mib_s"].as_f64();
            assert_eq!(throughput.is_some(), !method.starts_with("notify"), "{row}");
            assert_eq!(row["verify"].as_str().unwrap_or(""), verify, "{row}");
            assert!(row["p99_us"].as_f64() >= row["median_us"].as_f64());
            assert_eq!(row["repeats"], 2, "{row}");
            // The worker's share is reported for real transfers only.
            let worker = row["worker_median_us"].as_f64();
            assert_eq!(worker.is_some(), method != "memcpy", "{row}");
            assert!(worker <= row["median_us"].as_f64(), "{row}");
            assert_eq!(row["anomalies"], serde_json::json!({}), "{row}");
        }
    }
    assert_eq!(report["crossover"]["default_threshold"], 10 << 20);
    assert!(
        report["ratios"]["zero_copy_pooled_speedup_over_grpc_1KiB"]["ratio"].as_f64() > Some(0.0)
    );
    // The loan path verified by nothing is compared with the bare notification at every size.
    for size in ["1KiB", "64KiB"] {
        for against in ["notify", "notify_after_write"] {
            let key = format!("zero_copy_loan_none_within_{against}_{size}");
            assert!(
                report["ratios"][&key]["ratio"].as_f64() > Some(0.0),
                "{key}"
            );
        }
    }
    assert!(
        stdout.contains("zero_copy_loan_none latency / notify at 64.0 KiB"),
        "{stdout}"
    );
    assert_eq!(report["machine"]["platform"]["os"], std::env::consts::OS);

    let text = std::fs::read_to_string(&profile_path).unwrap();
    let costs = Config::parse_profile(&text).unwrap();
    assert!(costs.grpc_call_us > 0.0, "{costs:?}");
    assert!(costs.zero_copy_notify_us > 0.0, "{costs:?}");
    assert!(costs.memcpy_ns_per_byte > 0.0, "{costs:?}");
    assert!(text.contains("sizes = [1024, 2048"), "{text}");
    // Only the two outputs are in the directory: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn bad_arguments_exit_2_with_a_one_line_error() {
    for (args, expected) in [
        (
            &["--sizes", "1KiB..2TiB"][..],
            "out of range, expected 1.0 KiB to 1.0 GiB",
        ),
        (
            &["--repeats", "0"][..],
            "--repeats 0 is out of range, expected 1 to 1000",
        ),
        (&["--repeats", "1001"][..], "expected 1 to 1000"),
        (&["--sizes", "nonsense"][..], "invalid --sizes \"nonsense\""),
        (&["--sizes", "64KiB..1KiB"][..], "runs backwards"),
        (
            &["--json", "/nonexistent-dir/x.json"][..],
            "expected a file in an existing directory",
        ),
        (&["--write-profile", "-"][..], "expected a file"),
    ] {
        let o = perfopt(&[&["bench"][..], args].concat());
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
