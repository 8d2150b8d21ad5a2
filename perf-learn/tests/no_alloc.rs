//! Proves with a counting global allocator that the learned classifier, and a controller
//! decision that consults it, never allocate.

// A global allocator can only be written with `unsafe`; it delegates every
// call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use perf_core::{
    Config, Controller, DecisionContext, MethodClassifier, Reason, SystemState, Timestamp,
    TransferRequest, ZeroCopyAvailability,
};
use perf_learn::synthetic::{Physics, Workload};
use perf_learn::{LearnConfig, LearningEngine};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// the `GlobalAlloc` contract holds exactly as it does for `System`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn classify_and_a_learned_decision_do_not_allocate() {
    let mut engine = LearningEngine::new(LearnConfig {
        min_samples: 400,
        ..LearnConfig::default()
    });
    engine.add_paired(&Workload::new(Physics::default(), 1).pairs(400));
    assert!(engine.status().active);
    let classifier = engine.classifier();
    let controller = Controller::builder(Config::default())
        .classifier(Arc::new(classifier.clone()))
        .build()
        .unwrap();
    let ctx = DecisionContext {
        now: Timestamp::from_secs(1_700_000_000),
        system: SystemState::IDLE,
        zero_copy: ZeroCopyAvailability::Pooled,
    };
    let sizes = [4u64 << 10, 300 << 10, 1 << 20, 8 << 20, 200 << 20];
    for size in sizes {
        std::hint::black_box(classifier.classify(&TransferRequest::new(size), &ctx));
        std::hint::black_box(controller.decide(&TransferRequest::new(size), &ctx));
    }
    let before = allocations();
    let (mut answered, mut learned) = (0, 0);
    for _ in 0..100 {
        for size in sizes {
            let request = TransferRequest::new(size);
            answered += usize::from(classifier.classify(&request, &ctx).is_some());
            let d = controller.decide(&request, &ctx);
            learned += usize::from(matches!(d.reason, Reason::Learned { .. }));
        }
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(answered, 500);
    assert!(learned >= 100, "{learned}");
}
