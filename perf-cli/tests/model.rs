//! `perfopt model status | train | evaluate` and `perfopt run --compare` as a user runs them:
//! the shipped paired dataset's held-out accuracy and regret, training that saves a model only
//! when it validates, status of a store with and without a model, bad input, and a run whose
//! learning engine pairs real transfers while every request is carried four ways.

mod support;

use support::{json, perfopt, stderr};

use serde_json::Value;

#[test]
fn the_shipped_paired_dataset_is_learned_with_low_regret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // No model stored: it trains on 80 % of the shipped dataset and says so.
    let e = json(&["model", "evaluate", "--data-dir", d, "--json"]);
    assert!(
        e["model"]
            .as_str()
            .unwrap()
            .contains("no trained model stored"),
        "{e}"
    );
    assert!(e["evidence"].as_str().unwrap().contains("shipped dataset"));
    let accuracy = e["accuracy"].as_f64().unwrap();
    let regret = e["regret"].as_f64().unwrap();
    let held_out = e["held_out"].as_u64().unwrap();
    assert!(held_out >= 100, "{e}");
    // R4.4: over 90 % held-out accuracy (goal 98 %) and total latency within
    // 5 % of the oracle (goal 2 %). Measured on this dataset with the default
    // split: accuracy 0.912, regret 0.0012 (0.903-0.925 and 0.0002-0.0056
    // over four splits). Training and the split are deterministic.
    assert!(accuracy > 0.9, "accuracy {accuracy}");
    assert!(regret < 0.02, "regret {regret}");
    let decisive = e["decisive_accuracy"].as_f64().unwrap();
    assert!(decisive >= accuracy, "decisive {decisive} vs {accuracy}");
    let confusion = &e["confusion"]["rows_actual_columns_predicted"];
    let total: u64 = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| confusion[i][j].as_u64().unwrap())
        .sum();
    assert_eq!(total, held_out);
    // Reading creates no store.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn train_saves_a_validated_model_that_status_and_evaluate_then_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = json(&["model", "status", "--data-dir", d, "--json"]);
    assert_eq!(s["active"], false);
    assert_eq!(s["decides"], "rules");

    let t = json(&["model", "train", "--data-dir", d, "--json"]);
    assert_eq!(t["published"], true, "{t}");
    assert_eq!(t["version"], 1);
    assert!(t["validation"]["accuracy"].as_f64().unwrap() >= 0.75);
    assert!(t["validation"]["regret"].as_f64().unwrap() <= 0.05);

    let s = json(&["model", "status", "--data-dir", d, "--json"]);
    assert_eq!(s["active"], true, "{s}");
    assert_eq!(s["version"], 1);
    assert_eq!(s["versions_kept"], 1);
    assert!(s["nodes"].as_u64().unwrap() >= 3);

    let e = json(&["model", "evaluate", "--data-dir", d, "--json"]);
    assert_eq!(e["model"], "stored model v1");
    assert_eq!(e["accuracy"], t["validation"]["accuracy"]);

    // `decide` with the data directory decides as a learning run would, and says so;
    // without it, the rules decide (4 MiB is under the 10 MiB threshold).
    let learned = json(&["decide", "--size", "4MiB", "--data-dir", d, "--json"]);
    assert_eq!(
        learned["reason"], "cost_analysis.learned_classifier",
        "{learned}"
    );
    assert_eq!(learned["method"], "zero_copy");
    let why = learned["rationale"].as_str().unwrap();
    assert!(why.contains("model v1"), "{why}");
    let rules = json(&["decide", "--size", "4MiB", "--json"]);
    assert_eq!(rules["method"], "grpc");

    // Text output names the model and the figures.
    let o = perfopt(&["model", "status", "--data-dir", d]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("version 1") && text.contains("held-out accuracy"),
        "{text}"
    );
}

#[test]
fn bad_evidence_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let missing = dir.path().join("nope.csv");
    let o = perfopt(&[
        "model",
        "evaluate",
        "--data",
        missing.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--data"), "{}", stderr(&o));

    let wrong = dir.path().join("wrong.csv");
    std::fs::write(&wrong, "size,latency\n1,2\n").unwrap();
    let o = perfopt(&[
        "model",
        "train",
        "--data",
        wrong.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a paired dataset"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_compared_run_carries_every_request_four_ways_and_pairs_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("run.json");
    let o = perfopt(&[
        "run",
        "--duration",
        "4s",
        "--workers",
        "1",
        "--workload",
        "small",
        "--compare",
        "--learn-min-samples",
        "50",
        "--data-dir",
        d,
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["failed"], 0);
    let c = &r["compare"];
    let requests = c["without_model"]["requests"].as_u64().unwrap()
        + c["with_model"]["requests"].as_u64().unwrap();
    assert!(requests >= 10, "{c}");
    // Four transfers per request.
    assert!(r["transfers"].as_u64().unwrap() >= 4 * requests, "{r}");
    for arm in [
        "learned",
        "static_threshold",
        "always_grpc",
        "always_zero_copy",
    ] {
        let mean = c["without_model"]["mean_latency_us"][arm].as_f64().unwrap();
        assert!(
            mean > 0.0 || c["without_model"]["requests"] == 0,
            "{arm}: {c}"
        );
    }
    // The gRPC and zero-copy arms pair every request for the engine.
    let engine = &r["learning"]["engine"];
    assert!(
        engine["paired"].as_u64().unwrap() >= requests / 2,
        "{engine}"
    );
    assert_eq!(r["learning"]["enabled"], true);
}
