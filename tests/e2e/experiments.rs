//! An experiment from the configuration splits live transfers by session: each session's
//! variant decides with its settings, every record names the variant, and the stored
//! transfers give the experiment's report.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use perfopt::Optimizer;
use perfopt::core::{Config, FixedProbe, Method, TransferRequest};

use crate::in_process::InProcessWorker;

/// The default pool at a 64 MiB threshold without exploration, split 30/70 with a variant at
/// 1 MiB: 4 MiB payloads go by gRPC in the control and by zero-copy in the variant.
const CONFIG: &str = r#"
version = 1

[pools.default]
threshold = "64MiB"
exploration_rate = 0.0

[[experiments]]
name = "lower-threshold"
pool = "default"
min_samples = 100

[[experiments.variants]]
name = "control"
weight = 30

[[experiments.variants]]
name = "one-mib"
weight = 70
threshold = "1MiB"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_splits_live_transfers_and_its_report_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcessWorker::start(None).await;
    let optimizer = Arc::new(
        Optimizer::builder()
            .config(Config::from_toml_str(CONFIG).unwrap())
            .probe(Arc::new(FixedProbe::default()))
            .data_dir(dir.path())
            .build()
            .unwrap(),
    );
    let host = optimizer
        .host()
        .secret(worker.secret.clone())
        .connect(worker.endpoint.clone())
        .start()
        .await
        .unwrap();

    // 400 sessions, 32 at a time, one 4 MiB transfer each.
    let payload = Arc::new(vec![7u8; 4 << 20]);
    let sessions: Vec<u64> = (0..400).collect();
    let mut by_variant = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for chunk in sessions.chunks(32) {
        let mut tasks = tokio::task::JoinSet::new();
        for &session in chunk {
            let (host, payload) = (host.clone(), payload.clone());
            tasks.spawn(async move {
                let request = TransferRequest::new(payload.len() as u64).with_session(session);
                host.transfer(&request, &payload).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            let out = done.unwrap().unwrap();
            let arm = out
                .decision
                .experiment
                .expect("every transfer is in the experiment");
            assert_eq!(arm.experiment.as_str(), "lower-threshold");
            let expected = if arm.variant.as_str() == "one-mib" {
                Method::ZeroCopy
            } else {
                Method::Grpc
            };
            assert_eq!(out.metrics.method, expected, "{}", out.decision.rationale());
            assert_eq!(
                out.metrics.experiment,
                Some(arm),
                "the record names the variant"
            );
            let slot = by_variant.entry(arm.variant.to_string()).or_default();
            slot.0 += 1;
            slot.1 += u64::from(out.metrics.method == Method::ZeroCopy);
        }
    }
    // 30 % of 400 is 120, with a binomial standard deviation of about 9.
    let control = by_variant["control"].0;
    assert!((control as f64 - 120.0).abs() < 4.0 * 9.2, "{by_variant:?}");
    assert_eq!(control + by_variant["one-mib"].0, 400);

    // The running optimizer reports from its own store (the daemon's /api/v1/experiments).
    optimizer.flush().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let live = optimizer
        .experiment_report("lower-threshold", now_ms)
        .unwrap()
        .expect("the experiment is configured");
    assert_eq!(live.records, 400);
    assert!(
        optimizer
            .experiment_report("nope", now_ms)
            .unwrap()
            .is_none()
    );

    drop(host);
    let optimizer = Arc::try_unwrap(optimizer).unwrap_or_else(|_| panic!("one owner left"));
    let config = optimizer.controller().config();
    optimizer.shutdown();

    let stored =
        perfopt::stored_experiment_report(dir.path(), &config.experiments[0], now_ms).unwrap();
    assert_eq!(
        stored.records, 400,
        "every transfer was stored with its variant"
    );
    assert!(!stored.truncated);
    let report = &stored.report;
    let counts: Vec<(&str, u64, u64)> = report
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.transfers, v.failed))
        .collect();
    assert_eq!(
        counts,
        [("control", control, 0), ("one-mib", 400 - control, 0)]
    );
    assert!(report.srm.is_some());
    // The report compares the variants on the measured latencies; which one wins depends on
    // the machine, but a report of enough samples always says why.
    assert!(!report.reason.is_empty());
}
