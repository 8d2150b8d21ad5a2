//! The builder wires what `perfopt run` wires: a real data directory across a restart (history
//! replayed, cost models restored, thresholds and retention), a store that cannot be opened,
//! metrics from memory, the swept shared-memory backend and its pool, and the fixed-thresholds
//! policy for comparisons.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfopt::core::{
    EstimateSource, FixedPredictor, FixedProbe, MethodEstimate, ModelStore, Prediction,
    SampleFilter, SeriesQuery, Timestamp,
};
use perfopt::learn::LearnConfig;
use perfopt::learn::synthetic::{Physics, Workload};
use perfopt::predict::COST_MODELS_NAME;
use perfopt::{
    CostModelsOrigin, Method, Name, Optimizer, OptimizerBuilder, OptimizerError, StoreStatus,
    SystemState, TransferMetrics, TransferRequest,
};

const MIB: u64 = 1 << 20;
const DAY_NS: u64 = 24 * 3600 * 1_000_000_000;

fn builder() -> OptimizerBuilder {
    Optimizer::builder().probe(Arc::new(FixedProbe::default()))
}

fn with_learning(dir: &Path) -> Optimizer {
    builder()
        .data_dir(dir)
        .learning(LearnConfig {
            min_samples: 300,
            ..LearnConfig::default()
        })
        .build()
        .unwrap()
}

/// A workload whose clock starts `ago_ns` before now, so that retention keeps it.
fn recent_workload(o: &Optimizer, ago_ns: u64, seed: u64) -> Workload {
    let mut w = Workload::new(Physics::default(), seed);
    w.now = o.context().now.0 - ago_ns;
    w
}

#[test]
fn a_restart_replays_history_restores_cost_models_and_keeps_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Name::DEFAULT_POOL;
    let (saved, factor) = {
        let o = with_learning(dir.path());
        assert_eq!(
            o.store_status(),
            &StoreStatus::Persistent {
                dir: dir.path().to_path_buf()
            }
        );
        assert!(o.warnings().is_empty(), "{:?}", o.warnings());
        assert_eq!(o.cost_models_origin(), Some(&CostModelsOrigin::Fresh));
        assert_eq!(o.learning().unwrap().status().replayed, 0);
        let now = o.context().now;
        o.controller()
            .adjust_threshold(pool, 4 * MIB, "measured crossover", 0.12, now)
            .unwrap();
        let factor = o.controller().threshold(pool, &SystemState::IDLE).unwrap();
        let mut w = recent_workload(&o, 3_600_000_000_000, 5);
        for _ in 0..100 {
            for m in w.live_pair() {
                o.record(&m);
            }
        }
        // Ten transfers from 40 days ago: past every retention but the hourly buckets'.
        let mut old = w.live_pair()[0];
        for i in 0..10 {
            old.started_at = Timestamp(now.0 - 40 * DAY_NS + i * 1_000_000_000);
            o.record(&old);
        }
        let report = o.shutdown();
        assert_eq!(report.store.recorded, 210);
        assert_eq!(report.store.committed, 210);
        assert_eq!(report.store.flush_error, None);
        let learning = report.learning.unwrap();
        assert_eq!(learning.status.observed, 210);
        let models = report.cost_models.unwrap();
        assert!(models.version > 0, "{models:?}");
        assert_eq!(models.samples, 210, "{models:?}");
        assert!(models.saved_as.is_some(), "{models:?}");
        assert_eq!(models.save_error, None);
        assert_eq!(models.failed_skipped, 0);
        assert!(report.retention.unwrap().runs >= 1);
        (models, factor.history)
    };

    let o = with_learning(dir.path());
    assert!(o.warnings().is_empty(), "{:?}", o.warnings());
    // Retention ran before the replay: the old transfers are gone, the recent ones replayed.
    let retention = o.retention().unwrap();
    assert!(retention.cleaned_rows >= 10, "{retention:?}");
    let status = o.learning().unwrap().status();
    assert_eq!(status.replayed, 200, "{status:?}");
    assert!(
        status.paired > 0,
        "replayed pairs count as evidence: {status:?}"
    );
    assert_eq!(
        o.cost_models_origin(),
        Some(&CostModelsOrigin::Restored {
            version: saved.version,
            samples: saved.samples,
        })
    );
    assert_eq!(o.cost_models().unwrap().version(), saved.version);
    let t = o.controller().threshold(pool, &SystemState::IDLE).unwrap();
    assert_eq!(t.history, factor, "the adjustment was restored");
    assert!(
        o.controller()
            .threshold_history()
            .iter()
            .any(|c| c.reason == "measured crossover")
    );
}

#[test]
fn dropping_the_optimizer_saves_the_cost_models_too() {
    let dir = tempfile::tempdir().unwrap();
    let version = {
        let o = builder().data_dir(dir.path()).build().unwrap();
        let mut w = recent_workload(&o, 60_000_000_000, 8);
        for _ in 0..20 {
            for m in w.live_pair() {
                o.record(&m);
            }
        }
        // A failed transfer is recorded but teaches the models nothing.
        let mut failed = w.live_pair()[0];
        failed.fail(perfopt::core::FailureKind::Timeout);
        o.record(&failed);
        let learner = o.cost_models().unwrap().clone();
        drop(o);
        assert_eq!(learner.samples(), 40);
        learner.version()
    };
    assert!(version > 0);
    let o = builder().data_dir(dir.path()).build().unwrap();
    assert_eq!(
        o.cost_models_origin(),
        Some(&CostModelsOrigin::Restored {
            version,
            samples: 40
        })
    );
}

#[test]
fn saved_cost_models_that_do_not_load_are_reported_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = perfopt::store::RedbBackend::open(dir.path()).unwrap();
        store
            .models()
            .save_model(COST_MODELS_NAME, b"not cost models", Timestamp(1))
            .unwrap();
    }
    let o = builder().data_dir(dir.path()).build().unwrap();
    let Some(CostModelsOrigin::Unreadable { error }) = o.cost_models_origin() else {
        panic!("{:?}", o.cost_models_origin());
    };
    let error = error.to_string();
    assert!(error.contains("cost model file rejected"), "{error}");
    assert!(
        o.warnings()
            .iter()
            .any(|w| w.contains("the saved cost models are not used") && w.contains(&error)),
        "{:?}",
        o.warnings()
    );
    assert_eq!(o.cost_models().unwrap().version(), 0, "fresh models");
    // The next save replaces them.
    let saved = o.shutdown().cost_models.unwrap();
    assert!(saved.saved_as.is_some(), "{saved:?}");
    let o = builder().data_dir(dir.path()).build().unwrap();
    assert!(
        matches!(
            o.cost_models_origin(),
            Some(CostModelsOrigin::Restored { .. })
        ),
        "{:?}",
        o.cost_models_origin()
    );
}

#[test]
fn a_data_dir_that_is_a_file_falls_back_to_memory_and_strict_mode_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let o = builder().data_dir(&file).build().unwrap();
    let StoreStatus::Fallback { dir: asked, reason } = o.store_status() else {
        panic!("{:?}", o.store_status());
    };
    assert_eq!(asked, &file);
    let said = o.store_status().to_string();
    assert!(said.starts_with("memory: the metrics store in "), "{said}");
    assert!(said.ends_with(&reason.to_string()), "{said}");
    assert!(
        o.warnings().iter().any(|w| w.contains(&said)),
        "{:?}",
        o.warnings()
    );
    // Records still land somewhere queries see them.
    let ctx = o.context();
    for i in 0..5 {
        let req = TransferRequest::new((i + 1) * MIB);
        let d = o.decide(&req);
        o.record(&TransferMetrics::new(
            &req,
            &d,
            d.method,
            100.0,
            Timestamp(ctx.now.0 + i),
            ctx.system,
        ));
    }
    o.flush().unwrap();
    let samples = o.metrics().samples(&SampleFilter::default(), 100).unwrap();
    assert_eq!(samples.len(), 5);
    // A failed transfer is recorded, and skipped by the cost models.
    let mut failed = samples[0];
    failed.fail(perfopt::core::FailureKind::Refused);
    o.record(&failed);
    assert!(
        o.retention().is_none(),
        "nothing persists, nothing to clean"
    );
    let report = o.shutdown();
    assert_eq!(report.store.committed, 6);
    let models = report.cost_models.unwrap();
    assert_eq!(models.samples, 5, "the models learn in memory");
    assert_eq!(models.failed_skipped, 1);
    assert_eq!((models.saved_as, models.save_error), (None, None));

    let err = builder()
        .data_dir(&file)
        .require_store()
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, OptimizerError::Store { path, .. } if path == &file),
        "{err:?}"
    );
}

#[test]
fn a_store_held_by_another_optimizer_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let first = builder().data_dir(dir.path()).build().unwrap();
    assert!(first.store_status().is_persistent());
    let second = builder().data_dir(dir.path()).build().unwrap();
    assert!(
        matches!(second.store_status(), StoreStatus::Fallback { .. }),
        "{:?}",
        second.store_status()
    );
    assert!(!second.warnings().is_empty());
    let err = builder()
        .data_dir(dir.path())
        .require_store()
        .build()
        .unwrap_err();
    assert!(matches!(err, OptimizerError::Store { .. }), "{err:?}");
}

#[test]
fn without_a_data_dir_metrics_answer_from_memory() {
    let o = builder().build().unwrap();
    assert_eq!(o.store_status(), &StoreStatus::Memory);
    assert!(o.warnings().is_empty(), "{:?}", o.warnings());
    assert!(o.cost_models().is_none(), "off without a data directory");
    let now = o.context().now;
    for i in 0..20u64 {
        let req = TransferRequest::new(64 << 10);
        let d = o.decide(&req);
        let at = Timestamp(now.0 + i * 1_000_000);
        o.record(&TransferMetrics::new(
            &req,
            &d,
            d.method,
            100.0 + i as f64,
            at,
            SystemState::IDLE,
        ));
    }
    o.flush().unwrap();
    let q = SeriesQuery {
        pool: None,
        method: None,
        from: Timestamp(now.0 - 60_000_000_000),
        to: Timestamp(now.0 + 60_000_000_000),
        granularity_secs: 60,
    };
    let series = o.metrics().series(&q).unwrap();
    assert_eq!(series.iter().map(|p| p.latency_us.count).sum::<u64>(), 20);
    let total = o.store_query().summary(&q).unwrap();
    assert_eq!(total.latency_us.count, 20);
    assert_eq!(total.latency_us.min, 100.0);
    assert_eq!(total.latency_us.max, 119.0);
    assert_eq!(
        o.metrics()
            .samples(&SampleFilter::default(), 100)
            .unwrap()
            .len(),
        20
    );
}

#[test]
fn cost_models_can_be_switched_on_without_a_data_dir_and_feed_the_engine() {
    let o = builder().cost_models(true).build().unwrap();
    assert_eq!(o.cost_models_origin(), Some(&CostModelsOrigin::Fresh));
    let mut w = recent_workload(&o, 1_000_000_000, 3);
    for _ in 0..10 {
        for m in w.live_pair() {
            o.record(&m);
        }
    }
    let models = o.shutdown().cost_models.unwrap();
    assert_eq!(models.samples, 20);
    assert_eq!((models.saved_as, models.save_error), (None, None));
    assert!(
        format!(
            "{:?}",
            builder().cost_models(true).build().unwrap().controller()
        )
        .contains("perf-predict"),
        "the engine asks the learned models"
    );
}

#[test]
fn retention_runs_on_its_schedule_and_stops_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let err = builder()
        .data_dir(dir.path())
        .cleanup_every(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid cleanup_every: expected an interval above zero, got 0ns"
    );
    let o = builder()
        .data_dir(dir.path())
        .cleanup_every(Duration::from_millis(20))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while o.retention().unwrap().runs < 3 {
        assert!(Instant::now() < deadline, "{:?}", o.retention());
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = o.shutdown().retention.unwrap();
    assert!(stopped.runs >= 3);
    assert_eq!((stopped.failures, stopped.last_error), (0, None));
}

fn prediction(zero_copy_us: f64, grpc_us: f64) -> Prediction {
    let estimate = |latency_us: f64| MethodEstimate {
        latency_us,
        interval_us: Some((latency_us * 0.9, latency_us * 1.1)),
        ..MethodEstimate::default()
    };
    Prediction {
        zero_copy: estimate(zero_copy_us),
        grpc: estimate(grpc_us),
        confidence: 0.95,
        samples: 500,
    }
}

#[test]
fn the_fixed_thresholds_policy_runs_the_configuration_in_force_without_learning() {
    let o = builder()
        .predictor(Arc::new(FixedPredictor(prediction(300.0, 3_000.0))))
        .build()
        .unwrap();
    let request = TransferRequest::new(4 * MIB);
    let ctx = o.context();
    let learned = o.controller().preview(&request, &ctx);
    assert_eq!(learned.method, Method::ZeroCopy, "{learned:?}");
    assert_eq!(learned.estimates.unwrap().source, EstimateSource::Predicted);
    o.controller()
        .adjust_threshold(Name::DEFAULT_POOL, 2 * MIB, "test", 0.1, ctx.now)
        .unwrap();
    o.reload_config("version = 1\n[pools.ml]\n").unwrap();

    let fixed = o.fixed_thresholds_policy().unwrap();
    let d = fixed.preview(&request, &ctx);
    assert_eq!(
        d.estimates.unwrap().source,
        EstimateSource::Calibrated,
        "{d:?}"
    );
    let config = fixed.config();
    assert!(
        config.pools.contains_key(&Name::new("ml").unwrap()),
        "the reloaded configuration"
    );
    assert!(!config.defaults.learning);
    assert!(config.pools.values().all(|p| !p.settings.learning));
    let t = fixed
        .threshold(Name::DEFAULT_POOL, &SystemState::IDLE)
        .unwrap();
    assert_eq!(t.history, 1.0, "history does not move the fixed thresholds");
}

#[cfg(target_os = "linux")]
mod shm {
    use perfopt::SweepOutcome;
    use perfopt::platform::NamedShmConfig;
    use perfopt::transport::PoolError;

    use super::*;

    fn named_in(dir: &Path) -> NamedShmConfig {
        NamedShmConfig {
            dir: dir.to_path_buf(),
            ..NamedShmConfig::default()
        }
    }

    #[test]
    fn stale_named_segments_are_swept_and_the_pool_keeps_its_budget() {
        let shm_dir = tempfile::tempdir().unwrap();
        // This process's pid with another start time: a dead owner's segment.
        let stale = shm_dir.path().join(format!(
            "perfopt-0-{}-1-{}",
            std::process::id(),
            "ab".repeat(16)
        ));
        std::fs::write(&stale, b"").unwrap();
        let other = shm_dir.path().join("unrelated");
        std::fs::write(&other, b"").unwrap();
        let o = builder()
            .named_segments(true)
            .named_segment_config(named_in(shm_dir.path()))
            .shm_budget(8 * MIB)
            .build()
            .unwrap();
        let status = o.shm_status();
        assert_eq!(status.backend, "named");
        assert_eq!(
            status.sweep,
            SweepOutcome::Swept {
                found: 1,
                removed: 1,
                kept: 0
            }
        );
        assert!(!stale.exists() && other.exists());
        let pool = o.segment_pool();
        assert_eq!(pool.backend(), "named");
        let held = pool.acquire(4 << 20).unwrap();
        let err = pool.acquire(8 << 20).unwrap_err();
        assert!(matches!(err, PoolError::Exhausted { .. }), "{err:?}");
        drop(held);

        let o = builder().build().unwrap();
        assert_eq!(o.shm_status().backend, "memfd");
        assert_eq!(o.segment_pool().backend(), "memfd");
    }

    #[test]
    fn a_segment_directory_that_cannot_be_read_is_said_and_fatal_only_for_named_segments() {
        let missing = tempfile::tempdir().unwrap().path().join("gone");
        let o = builder()
            .named_segment_config(named_in(&missing))
            .build()
            .unwrap();
        assert_eq!(o.shm_status().backend, "memfd");
        assert!(
            matches!(o.shm_status().sweep, SweepOutcome::Failed { .. }),
            "{:?}",
            o.shm_status()
        );
        assert!(
            o.warnings()
                .iter()
                .any(|w| w.starts_with("stale named segments are not swept")),
            "{:?}",
            o.warnings()
        );
        let err = builder()
            .named_segments(true)
            .named_segment_config(named_in(&missing))
            .build()
            .unwrap_err();
        assert!(matches!(err, OptimizerError::Shm(_)), "{err:?}");
    }
}

#[test]
fn an_optimizer_can_be_shared_across_threads_and_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Optimizer>();
    shared::<perfopt::ShutdownReport>();
}
