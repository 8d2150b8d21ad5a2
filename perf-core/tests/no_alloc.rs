//! Proves with a counting global allocator that `Controller::decide` never allocates.

// A global allocator can only be written with `unsafe`; it delegates every
// call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use perf_core::config::{Condition, PoolConfig, PoolSettings, Rule};
use perf_core::{
    Config, Controller, DataType, Decision, DecisionContext, FixedPredictor, Locality, Method,
    MethodEstimate, MetricsQuery, Name, Prediction, ReasonCode, SystemState, Timestamp,
    TransferRequest, ZeroCopyAvailability,
};

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

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Passes unless the payload is text, which it sends by zero-copy; reads no metrics.
fn text_goes_zero_copy(
    request: &TransferRequest,
    _ctx: &DecisionContext,
    _metrics: &dyn MetricsQuery,
) -> Option<Method> {
    (request.data_type == DataType::Text).then_some(Method::ZeroCopy)
}

/// A controller with rules, a decision function, a second pool and exploration on.
fn controller(predictor: Option<Prediction>) -> Controller {
    let mut cfg = Config::default();
    let explorative = PoolSettings {
        exploration_rate: 0.2,
        ..PoolSettings::default()
    };
    cfg.pools.get_mut(&Name::DEFAULT_POOL).unwrap().settings = explorative;
    cfg.pools.insert(
        Name::new("ml").unwrap(),
        PoolConfig {
            settings: explorative,
            rules: vec![Rule {
                name: Name::new("ml-tensors").unwrap(),
                priority: 5,
                condition: Condition {
                    data_types: vec![DataType::Tensor],
                    size_max: Some(64 * MIB),
                    ..Condition::default()
                },
                method: Method::ZeroCopy,
            }],
        },
    );
    cfg.rules.push(Rule {
        name: Name::new("json-grpc").unwrap(),
        priority: 9,
        condition: Condition {
            formats: vec![perf_core::Format::Json],
            ..Condition::default()
        },
        method: Method::Grpc,
    });
    let mut b = Controller::builder(cfg).seed(11).function(
        Name::new("text").unwrap(),
        3,
        &[],
        Arc::new(text_goes_zero_copy),
    );
    if let Some(p) = predictor {
        b = b.predictor(Arc::new(FixedPredictor(p)));
    }
    b.build().unwrap()
}

/// Requests and contexts that reach every step of the decision order.
fn workload() -> Vec<(TransferRequest, DecisionContext)> {
    let now = Timestamp::from_secs(1_700_000_000);
    let ml = Name::new("ml").unwrap();
    let idle = DecisionContext::idle(now);
    let busy = DecisionContext {
        system: SystemState {
            cpu_utilization: 0.95,
            memory_used: 0.95,
            shm_free: 64 * GIB,
            ..SystemState::IDLE
        },
        zero_copy: ZeroCopyAvailability::Fresh,
        ..idle
    };
    let no_shm = DecisionContext {
        zero_copy: ZeroCopyAvailability::Unavailable,
        ..idle
    };
    let r = TransferRequest::new;
    let mut out = vec![
        (r(4 * KIB), idle),
        (r(2 * GIB), idle),
        (r(6 * MIB), idle),
        (r(12 * MIB), busy),
        (r(256 * MIB).with_override(Method::Grpc), idle),
        (r(4 * KIB).with_override(Method::ZeroCopy), idle),
        (r(256 * MIB).with_locality(Locality::Remote), idle),
        (r(256 * MIB), no_shm),
        (r(2 * MIB).with_format(perf_core::Format::Json), idle),
        (r(2 * MIB).with_data_type(DataType::Text), idle),
        (
            r(8 * MIB).with_data_type(DataType::Tensor).with_pool(ml),
            idle,
        ),
        (r(8 * MIB).with_pool(Name::new("unknown").unwrap()), idle),
    ];
    // Sizes across the exploration band [5 MiB, 20 MiB], so that draws happen.
    for i in 0..64 {
        out.push((r(5 * MIB + i * 240 * KIB), idle));
        out.push((r(5 * MIB + i * 240 * KIB).with_pool(ml), busy));
    }
    out
}

/// Runs `decide` over the workload `rounds` times; returns the allocations
/// made meanwhile and the reason codes seen.
fn measure(
    c: &Controller,
    work: &[(TransferRequest, DecisionContext)],
    rounds: usize,
) -> (u64, [u64; ReasonCode::ALL.len()]) {
    let mut reasons = [0u64; ReasonCode::ALL.len()];
    let before = allocations();
    for _ in 0..rounds {
        for (request, ctx) in work {
            let d = std::hint::black_box(c.decide(request, ctx));
            reasons[d.reason.code().index()] += 1;
        }
    }
    (allocations() - before, reasons)
}

/// Writes nowhere; counts bytes, so formatting can be measured without a buffer.
struct Sink(usize);

impl fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[test]
fn decide_allocates_nothing_on_any_path() {
    let work = workload();
    let confident = Prediction {
        zero_copy: MethodEstimate {
            latency_us: 300.0,
            ..MethodEstimate::default()
        },
        grpc: MethodEstimate {
            latency_us: 3_000.0,
            ..MethodEstimate::default()
        },
        confidence: 0.9,
        samples: 100,
    };
    for c in [controller(None), controller(Some(confident))] {
        // Warm up: the first snapshot load of a thread may register it with
        // arc-swap, which allocates once.
        measure(&c, &work, 2);

        // The counter works: an allocation inside the window is seen.
        let before = allocations();
        std::hint::black_box(vec![0u8; 16]);
        assert_eq!(allocations() - before, 1, "the counting allocator counts");

        let (allocated, reasons) = measure(&c, &work, 500);
        assert_eq!(allocated, 0, "decide allocated {allocated} times");
        // Every kind of path ran in the measured window.
        for code in [
            ReasonCode::Override,
            ReasonCode::RemoteWorker,
            ReasonCode::ZeroCopyUnavailable,
            ReasonCode::Rule,
            ReasonCode::Function,
            ReasonCode::BelowFloor,
            ReasonCode::AboveCeiling,
            ReasonCode::CostAnalysis,
            ReasonCode::Exploration,
        ] {
            assert!(reasons[code.index()] > 0, "no {code} decision: {reasons:?}");
        }

        // The rationale is only text on demand, and formatting it allocates
        // nothing by itself either.
        let decisions: Vec<Decision> = work.iter().map(|(r, x)| c.decide(r, x)).collect();
        let mut sink = Sink(0);
        let before = allocations();
        for d in &decisions {
            write!(sink, "{}", d.rationale()).unwrap();
        }
        assert_eq!(allocations() - before, 0);
        assert!(sink.0 > 1000);
    }
}
