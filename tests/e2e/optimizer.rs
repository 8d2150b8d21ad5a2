//! The builder wires configuration, engine, sinks and decision functions together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use perfopt::core::{MetricsQuery, SystemState, Timestamp};
use perfopt::{
    Config, DecisionContext, Method, MetricsSink, Name, Optimizer, OptimizerError, Reason,
    TransferMetrics, TransferRequest, ZeroCopyAvailability,
};

const MIB: u64 = 1 << 20;

#[derive(Default)]
struct CountingSink {
    records: AtomicU64,
    bytes: AtomicU64,
}

impl MetricsSink for CountingSink {
    fn record(&self, m: &TransferMetrics) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(m.size, Ordering::Relaxed);
    }
}

#[test]
fn decisions_follow_the_default_policy_and_records_reach_every_sink() {
    let a = Arc::new(CountingSink::default());
    let b = Arc::new(CountingSink::default());
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .sink(a.clone())
        .sink(b.clone())
        .seed(7)
        .build()
        .unwrap();
    let small = TransferRequest::new(4 << 10);
    let large = TransferRequest::new(2 << 30);
    let d_small = optimizer.decide(&small);
    let d_large = optimizer.decide(&large);
    assert_eq!(d_small.method, Method::Grpc);
    assert!(matches!(d_small.reason, Reason::BelowFloor { .. }));
    assert_eq!(d_large.method, Method::ZeroCopy);
    assert!(matches!(d_large.reason, Reason::AboveCeiling { .. }));

    let ctx = optimizer.context();
    for (req, d) in [(small, d_small), (large, d_large)] {
        let m = TransferMetrics::new(&req, &d, d.method, 100.0, ctx.now, ctx.system);
        optimizer.record(&m);
    }
    for sink in [&a, &b] {
        assert_eq!(sink.records.load(Ordering::Relaxed), 2);
        assert_eq!(sink.bytes.load(Ordering::Relaxed), (4 << 10) + (2 << 30));
    }
}

#[test]
fn the_builder_reads_a_config_file_and_rejects_a_broken_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "version = 1\n[pools.ml]\nthreshold = \"4MiB\"\ngoal = \"maximize_throughput\"\n",
    )
    .unwrap();
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .config_file(&good)
        .build()
        .unwrap();
    let ml = Name::new("ml").unwrap();
    let req = TransferRequest::new(6 * MIB).with_pool(ml);
    // A preview shows the policy's own pick: 6 MiB lies in the exploration band.
    let d = optimizer.controller().preview(&req, &optimizer.context());
    assert_eq!(d.method, Method::ZeroCopy, "{}", d.rationale());
    assert_eq!(d.threshold.base, 4 * MIB);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[pools.ml]\nthreshold = -4\ngoal = \"fast\"\n",
    )
    .unwrap();
    match Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .config_file(&bad)
        .build()
    {
        Err(OptimizerError::Config { path, errors }) => {
            assert_eq!(path, bad);
            assert_eq!(errors.0.len(), 2, "{errors}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    let missing = dir.path().join("missing.toml");
    assert!(matches!(
        Optimizer::builder()
            .probe(Arc::new(perfopt::core::FixedProbe::default()))
            .config_file(&missing)
            .build(),
        Err(OptimizerError::Io { .. })
    ));
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, vec![b'#'; (1 << 20) + 1]).unwrap();
    assert!(matches!(
        Optimizer::builder()
            .probe(Arc::new(perfopt::core::FixedProbe::default()))
            .config_file(&huge)
            .build(),
        Err(OptimizerError::TooLarge { .. })
    ));
}

#[test]
fn a_decision_function_reads_metrics_and_decides_among_the_rules() {
    struct Busy;
    impl MetricsQuery for Busy {
        fn series(
            &self,
            _q: &perfopt::core::SeriesQuery,
        ) -> Result<Vec<perfopt::core::SeriesPoint>, perfopt::core::QueryError> {
            Ok(Vec::new())
        }
        fn samples(
            &self,
            _f: &perfopt::core::SampleFilter,
            _limit: usize,
        ) -> Result<Vec<TransferMetrics>, perfopt::core::QueryError> {
            Err(perfopt::core::QueryError::Store("offline".into()))
        }
    }
    let f = |r: &TransferRequest, _c: &DecisionContext, m: &dyn MetricsQuery| {
        // With no history to go on, payloads of 2 MiB or more go by zero-copy.
        let history = m.samples(&Default::default(), 10).unwrap_or_default();
        (history.is_empty() && r.size >= 2 * MIB).then_some(Method::ZeroCopy)
    };
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .metrics_query(Arc::new(Busy))
        .function(Name::new("no-history").unwrap(), 5, &[], Arc::new(f))
        .build()
        .unwrap();
    let d = optimizer.decide(&TransferRequest::new(3 * MIB));
    assert_eq!(d.method, Method::ZeroCopy);
    assert_eq!(d.reason.rule_name(), Some(Name::new("no-history").unwrap()));
    let d = optimizer.decide(&TransferRequest::new(MIB));
    assert_eq!(d.method, Method::Grpc);
    assert!(matches!(d.reason, Reason::BelowThreshold));
}

#[test]
fn without_shared_memory_every_transfer_goes_by_grpc() {
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .zero_copy(ZeroCopyAvailability::Unavailable)
        .config(Config::default())
        .build()
        .unwrap();
    for shift in 10..=31 {
        let d = optimizer.decide(&TransferRequest::new(1 << shift));
        assert_eq!(d.method, Method::Grpc);
        assert!(matches!(d.reason, Reason::ZeroCopyUnavailable));
    }
    let ctx = DecisionContext {
        now: Timestamp(1),
        system: SystemState::IDLE,
        zero_copy: ZeroCopyAvailability::Pooled,
    };
    let d = optimizer
        .controller()
        .decide(&TransferRequest::new(2 << 30), &ctx);
    assert_eq!(d.method, Method::ZeroCopy);
}

#[test]
fn the_example_policy_is_valid_and_does_what_its_comments_say() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/perfopt.toml");
    let config = perfopt::load_config(&path).unwrap();
    let optimizer = Optimizer::builder()
        .probe(Arc::new(perfopt::core::FixedProbe::default()))
        .config(config)
        .build()
        .unwrap();
    let ctx = optimizer.context();
    let preview = |r: TransferRequest| optimizer.controller().preview(&r, &ctx);
    let ml = Name::new("ml").unwrap();
    let tensor = preview(
        TransferRequest::new(3 * MIB)
            .with_pool(ml)
            .with_data_type(perfopt::DataType::Tensor),
    );
    assert_eq!(tensor.method, Method::ZeroCopy);
    assert_eq!(
        tensor.reason.rule_name(),
        Name::new("tensors-zero-copy").ok()
    );
    let json = preview(
        TransferRequest::new(64 * MIB)
            .with_pool(Name::new("batch").unwrap())
            .with_format(perfopt::Format::Json),
    );
    assert_eq!(json.method, Method::Grpc);
    assert_eq!(json.reason.rule_name(), Name::new("json-on-grpc").ok());
}

#[test]
fn a_config_naming_a_profile_runs_on_the_profile_costs() {
    let dir = tempfile::tempdir().unwrap();
    let costs = perfopt::core::CostCoefficients {
        grpc_call_us: 1234.0,
        ..Default::default()
    };
    std::fs::write(
        dir.path().join("calibration.toml"),
        costs.to_profile_toml(Default::default()),
    )
    .unwrap();
    let path = dir.path().join("perfopt.toml");
    std::fs::write(&path, "version = 1\nprofile = \"calibration.toml\"\n").unwrap();
    let config = perfopt::load_config(&path).unwrap();
    assert_eq!(config.costs.grpc_call_us, 1234.0);

    std::fs::write(dir.path().join("calibration.toml"), "version = 1\n").unwrap();
    match perfopt::load_config(&path) {
        Err(OptimizerError::Config { path, errors }) => {
            assert!(path.ends_with("calibration.toml"));
            assert_eq!(errors.0[0].path, "costs");
        }
        other => panic!("expected the profile's error, got {other:?}"),
    }
}
