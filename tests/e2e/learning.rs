//! The facade with learning on: recorded transfers train the classifier in the background, the
//! engine then decides by it, and the model persists in the data directory's store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use perfopt::core::FixedProbe;
use perfopt::learn::synthetic::{Physics, Workload};
use perfopt::learn::{EventKind, LearnConfig};
use perfopt::{Method, Optimizer, Reason, TransferRequest};

fn optimizer(dir: &std::path::Path) -> Optimizer {
    Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .data_dir(dir)
        .learning(LearnConfig {
            min_samples: 300,
            ..LearnConfig::default()
        })
        .build()
        .unwrap()
}

#[test]
fn recorded_transfers_train_a_model_that_decides_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB is past the synthetic machine's 64 KiB crossover, under the 10 MiB threshold.
    let request = TransferRequest::new(1 << 20);
    {
        let o = optimizer(dir.path());
        assert_eq!(o.decide(&request).method, Method::Grpc);
        let learning = o.learning().expect("learning is on");
        let mut w = Workload::new(Physics::default(), 21);
        let deadline = Instant::now() + Duration::from_secs(30);
        while learning.classifier().model().is_none() {
            for m in w.live_pair() {
                o.record(&m);
            }
            // Let the background thread keep up rather than drop records.
            std::thread::yield_now();
            assert!(Instant::now() < deadline, "{:?}", learning.status());
        }
        let d = o.decide(&request);
        assert_eq!(d.method, Method::ZeroCopy, "{d:?}");
        assert!(matches!(d.reason, Reason::Learned { .. }), "{d:?}");
        learning.finish();
        assert!(
            learning
                .engine()
                .events()
                .any(|e| matches!(e.kind, EventKind::Published { .. }))
        );
    }
    // A restart starts from the stored model.
    let o = optimizer(dir.path());
    let learning = o.learning().unwrap();
    assert!(learning.status().active, "{:?}", learning.status());
    let d = o.decide(&request);
    assert!(matches!(d.reason, Reason::Learned { .. }), "{d:?}");
}
