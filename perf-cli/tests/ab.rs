//! `perfopt ab`: an experiment configured in the file splits a real `perfopt run` (worker
//! processes, shared memory, gRPC, the redb store) by session, and `ab list`, `ab status` and
//! `ab report` read it back.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const CONFIG: &str = r#"
version = 1

[[experiments]]
name = "lower-threshold"
pool = "default"
min_samples = 100

[[experiments.variants]]
name = "control"
weight = 50

[[experiments.variants]]
name = "one-mib"
weight = 50
threshold = "1MiB"
"#;

fn perfopt(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env("PERFOPT_DATA_DIR", data_dir)
        .output()
        .expect("perfopt starts")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn an_experiment_splits_a_real_run_and_its_report_reads_every_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("perfopt.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap();

    let listed = ok(&perfopt(&["ab", "list", "--config", config], &data));
    assert!(
        listed.starts_with(
            "lower-threshold: pool default, control 50 %, one-mib 50 % (threshold 1MiB); mean_latency, \
             sequential, alpha 0.05, 100 samples per variant"
        ),
        "{listed}"
    );

    let unknown = perfopt(&["ab", "report", "nope", "--config", config], &data);
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no experiment \"nope\", expected one of lower-threshold"),
        "{err}"
    );

    let run = ok(&perfopt(
        &[
            "run",
            "--config",
            config,
            "--duration",
            "4s",
            "--learning",
            "off",
            "--json",
            "-",
        ],
        &data,
    ));
    // The summary's text comes first, then its JSON.
    let json = &run[run
        .find("\n{")
        .unwrap_or_else(|| panic!("no JSON in {run}"))..];
    let summary: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {run}"));
    let recorded = summary["store"]["recorded"]
        .as_u64()
        .unwrap_or_else(|| panic!("no store.recorded in {summary:#}"));
    assert!(recorded > 200, "{summary:#}");

    let report = ok(&perfopt(
        &[
            "ab",
            "report",
            "lower-threshold",
            "--config",
            config,
            "--json",
        ],
        &data,
    ));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["records"], recorded,
        "every recorded transfer is in the report"
    );
    assert_eq!(report["truncated"], false);
    let variants = report["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["control", "one-mib"]);
    let transfers: u64 = variants
        .iter()
        .map(|v| v["transfers"].as_u64().unwrap())
        .sum();
    assert_eq!(transfers, recorded);
    // The run's 256 sessions are split by their hash: both variants have some, and the
    // sample-ratio check of sessions against 50/50 holds.
    let sessions: Vec<u64> = variants
        .iter()
        .map(|v| v["sessions"].as_u64().unwrap())
        .collect();
    assert!(
        sessions.iter().all(|s| *s > 64) && sessions.iter().sum::<u64>() <= 256,
        "{sessions:?}"
    );
    assert_ne!(report["srm"]["grade"], "red", "{report:#}");
    assert!(variants[1]["vs_control"].is_object(), "{report:#}");
    assert!(report["recommendation"]["action"].is_string());

    let status = ok(&perfopt(
        &["ab", "status", "lower-threshold", "--config", config],
        &data,
    ));
    assert!(
        status.starts_with("experiment lower-threshold (pool default, mean_latency, sequential"),
        "{status}"
    );
    for line in [
        "  control: ",
        "  one-mib: ",
        "  sample ratio: ",
        "  recommendation: ",
    ] {
        assert!(status.contains(line), "no {line:?} in\n{status}");
    }
    let full = ok(&perfopt(
        &["ab", "report", "lower-threshold", "--config", config],
        &data,
    ));
    assert!(full.contains("vs control"), "{full}");

    // The export names each record's variant.
    let csv = ok(&perfopt(&["export", "--format", "csv"], &data));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (experiment, variant) = (at("experiment"), at("variant"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, recorded);
    assert!(
        rows.iter()
            .all(|r| r[experiment] == "lower-threshold"
                && ["control", "one-mib"].contains(&r[variant])),
        "{csv}"
    );

    // A candidate estimated offline from the run's logged decisions and propensities.
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        "version = 1\n[defaults]\nthreshold = \"2MiB\"\nlearning = false\n",
    )
    .unwrap();
    let candidate = candidate.to_str().unwrap();
    let sim: Value = serde_json::from_str(&ok(&perfopt(
        &["ab", "simulate", "--candidate", candidate, "--json"],
        &data,
    )))
    .unwrap();
    let e = &sim["evaluation"];
    assert_eq!(sim["transfers"], e["n"], "{sim:#}");
    assert!(e["n"].as_u64().unwrap() > 200, "{sim:#}");
    assert!(e["matched"].as_u64().unwrap() > 0, "{sim:#}");
    for estimator in ["ips", "snips", "dr"] {
        let est = &e[estimator];
        let (low, mid, high) = (
            est["ci"]["low"].as_f64().unwrap(),
            est["estimate"].as_f64().unwrap(),
            est["ci"]["high"].as_f64().unwrap(),
        );
        assert!(
            low <= mid && mid <= high && mid.is_finite(),
            "{estimator}: {est:#}"
        );
    }
    let text = ok(&perfopt(
        &["ab", "simulate", "--candidate", candidate],
        &data,
    ));
    assert!(text.contains("  doubly robust  mean latency "), "{text}");
    let bad = perfopt(
        &["ab", "simulate", "--candidate", candidate, "--alpha", "2"],
        &data,
    );
    assert_eq!(bad.status.code(), Some(2));

    // Promote the report's winner, or name one when it has none.
    let recommended = report["recommendation"]["variant"]
        .as_str()
        .map(str::to_string);
    let mut promote = vec![
        "ab",
        "promote",
        "lower-threshold",
        "--config",
        config,
        "--json",
    ];
    if recommended.is_none() {
        promote.extend(["--variant", "one-mib", "--why", "tried by hand"]);
    }
    let event: Value = serde_json::from_str(&ok(&perfopt(&promote, &data))).unwrap();
    let variant = recommended.as_deref().unwrap_or("one-mib");
    assert_eq!(event["action"], "promote");
    assert_eq!(event["variant"], variant);
    let promoted = std::fs::read_to_string(config).unwrap();
    let backup = event["backup"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(backup).unwrap(), CONFIG);
    let validate = perfopt(&["config", "validate", config], &data);
    assert!(validate.status.success(), "{promoted}");
    if variant == "one-mib" {
        assert!(
            promoted.contains("[pools.default]\nthreshold = \"1MiB\""),
            "{promoted}"
        );
    }
    assert!(
        promoted.contains("stop = "),
        "the experiment stops:\n{promoted}"
    );
    let listed = ok(&perfopt(&["ab", "list", "--config", config], &data));
    assert!(listed.contains(", until "), "{listed}");

    let back = ok(&perfopt(
        &[
            "ab",
            "rollback",
            "lower-threshold",
            "--config",
            config,
            "--why",
            "test",
        ],
        &data,
    ));
    assert!(back.starts_with("rolled back the promotion of "), "{back}");
    assert_eq!(std::fs::read_to_string(config).unwrap(), CONFIG);
    let journal = std::fs::read_to_string(data.join("experiments.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2, "{journal}");
    let again = perfopt(
        &["ab", "rollback", "lower-threshold", "--config", config],
        &data,
    );
    assert_eq!(again.status.code(), Some(2));
}
