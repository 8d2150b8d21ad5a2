//! The facade with a data directory: transfers land in the store, and thresholds survive a restart.

use std::sync::Arc;

use perfopt::core::{FixedProbe, SeriesQuery, Timestamp};
use perfopt::{Method, Name, Optimizer, SystemState, TransferMetrics, TransferRequest};

const MIB: u64 = 1 << 20;

fn optimizer(dir: &std::path::Path) -> Optimizer {
    Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .data_dir(dir)
        .build()
        .unwrap()
}

#[test]
fn records_reach_the_store_and_thresholds_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Name::DEFAULT_POOL;
    let now = Timestamp::from_secs(1_800_000_000);
    {
        let o = optimizer(dir.path());
        let change = o
            .controller()
            .adjust_threshold(pool, 4 * MIB, "measured crossover", 0.12, now)
            .unwrap();
        assert_eq!(change.to_factor, 0.75);
        for i in 0..50u64 {
            let req = TransferRequest::new((i + 1) * MIB);
            let d = o.decide(&req);
            let mut m =
                TransferMetrics::new(&req, &d, d.method, 100.0 + i as f64, now, SystemState::IDLE);
            m.started_at = Timestamp(now.0 + i * 1_000_000);
            o.record(&m);
        }
        let sink = o.store();
        sink.try_flush().unwrap();
        assert_eq!(sink.stats().committed, 50);
    }
    let o = optimizer(dir.path());
    let history = o.controller().threshold_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "measured crossover");
    let t = o.controller().threshold(pool, &SystemState::IDLE).unwrap();
    assert_eq!(t.history, 0.75, "the adjustment was restored");

    drop(o);
    let stored = perfopt::store::RedbBackend::open(dir.path()).unwrap();
    let q = perfopt::store::StoreQuery::new(Arc::new(stored));
    let total = q.summary(&query(now)).unwrap();
    assert_eq!(total.latency_us.count, 50);
    assert_eq!(total.latency_us.min, 100.0);
    assert_eq!(total.latency_us.max, 149.0);
    let zero_copy = q
        .summary(&SeriesQuery {
            method: Some(Method::ZeroCopy),
            ..query(now)
        })
        .unwrap();
    assert!(zero_copy.latency_us.count > 0 && zero_copy.latency_us.count < 50);
}

fn query(now: Timestamp) -> SeriesQuery {
    SeriesQuery {
        pool: None,
        method: None,
        from: Timestamp(now.0 - 60_000_000_000),
        to: Timestamp(now.0 + 60_000_000_000),
        granularity_secs: 60,
    }
}
