//! The hot-path functions of assignment, and the experiment policy's decisions, do not
//! allocate: a counting global allocator sees no allocation while they run.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use perf_abtest::ExperimentPolicy;
use perf_abtest::assign::{Split, bucket, bucket_session};
use perf_core::{Config, Controller, DecisionContext, Timestamp, TransferPolicy, TransferRequest};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn bucketing_and_variant_choice_do_not_allocate() {
    let split = Split::from_fractions(&[0.1, 0.2, 0.7]).expect("valid split");
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut sum = 0usize;
    for session in [0, 1, 42, 99_999, u64::MAX] {
        sum += split.variant(bucket_session("no-alloc", session));
        sum += split.variant(bucket("no-alloc", "a-unit-ü"));
        sum += split.assign_session("no-alloc", session);
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(sum > 0);
    assert_eq!(after - before, 0, "allocations while bucketing");

    // One test per binary: the counter is global, so nothing else runs meanwhile.
    let config = Config::from_toml_str(
        r#"
version = 1

[[experiments]]
name = "no-alloc"
pool = "default"
variants = [{ name = "a", weight = 30 }, { name = "b", weight = 70, threshold = "1MiB" }]
"#,
    )
    .expect("valid configuration");
    let policy = ExperimentPolicy::new(Arc::new(Controller::new(config).expect("valid")));
    let ctx = DecisionContext::idle(Timestamp::from_secs(1_800_000_000));
    // The first decision of a thread may register it with arc-swap, which allocates once.
    let _ = policy.decide(&TransferRequest::new(1), &ctx);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut assigned = [0u64; 2];
    for session in 0..2_000u64 {
        let request = TransferRequest::new(1 << (10 + session % 20)).with_session(session);
        let d = std::hint::black_box(policy.decide(&request, &ctx));
        let arm = d.experiment.expect("the default pool runs the experiment");
        assigned[usize::from(arm.variant.as_str() == "b")] += 1;
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "allocations while deciding in an experiment"
    );
    assert!(assigned.iter().all(|n| *n > 400), "{assigned:?}");
}
