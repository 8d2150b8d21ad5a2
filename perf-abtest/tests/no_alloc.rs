//! The hot-path functions of assignment do not allocate: a counting global allocator sees
//! no allocation while they run.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use perf_abtest::assign::{Split, bucket, bucket_session};

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
}
