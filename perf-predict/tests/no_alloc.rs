//! Proves with a counting global allocator that `LearnedPredictor::predict` never allocates.

// A global allocator can only be written with `unsafe`; it delegates every
// call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use perf_core::seams::Predictor;
use perf_core::{Method, SystemState, TransferRequest};
use perf_predict::synthetic::{SyntheticModel, samples};
use perf_predict::{Learner, ModelConfig};

/// Counts the allocations made by the current thread.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // During thread teardown the counter may be gone; such allocations are
    // not the test's.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// the `GlobalAlloc` contract holds exactly as it does for `System`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
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
fn predict_does_not_allocate() {
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    for (method, fixed, per_mib) in [(Method::Grpc, 95.0, 1100.0), (Method::ZeroCopy, 47.0, 50.0)] {
        let model = SyntheticModel {
            method,
            fixed_us: fixed,
            cached_us_per_mib: per_mib,
            bulk_us_per_mib: per_mib,
            knot_bytes: 2 << 20,
            noise: 0.05,
        };
        // Each transfer is also a call whose reply came back by the same method, so that the
        // reply models have a crossover to answer with.
        let calls: Vec<_> = samples(&model, 3000, 11)
            .into_iter()
            .map(|mut m| {
                m.reply = Some(perf_core::ReplyRecord {
                    method: m.method,
                    size: m.size,
                    latency_us: m.latency_us,
                    inline: false,
                });
                m
            })
            .collect();
        learner.update_batch(&calls);
    }
    let predictor = learner.predictor();
    let sizes = [1u64 << 10, 1 << 20, 8 << 20, 1 << 30, 3];
    // Warm up (the first ArcSwap load on a thread may register it).
    for size in sizes {
        std::hint::black_box(predictor.predict(&TransferRequest::new(size), &SystemState::IDLE));
    }
    let before = allocations();
    let mut answered = 0;
    for _ in 0..100 {
        for size in sizes {
            let p = predictor.predict(&TransferRequest::new(size), &SystemState::IDLE);
            answered += usize::from(std::hint::black_box(p).is_some());
        }
        let crossover = predictor.reply_crossover(perf_core::Name::DEFAULT_POOL);
        answered += usize::from(std::hint::black_box(crossover).is_some());
    }
    assert_eq!(allocations() - before, 0);
    assert!(answered >= 500, "{answered}");
}
