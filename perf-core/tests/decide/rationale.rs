//! The rationale text: a snapshot with one rationale per reason, and how much dearer the
//! chosen method is stated correctly.

use std::fmt::Write as _;
use std::sync::Arc;

use perf_core::ZeroCopyAvailability::Fresh;
use perf_core::config::PoolSettings;
use perf_core::{
    Controller, Decision, DecisionContext, FixedPolicy, Goal, Locality, Method, MethodClassifier,
    ReasonCode, TransferPolicy, TransferRequest, Verdict, ZeroCopyAvailability,
};

use crate::support::{
    BUSY_AND_FULL, FULL_MEMORY, FakeQuery, GIB, IDLE, KIB, MIB, add_pool, config_with,
    config_with_large_grpc_rule, ctx, expect, goal_pools, idle, name, settings,
    zero_copy_when_grpc_is_slow,
};

/// The first decision of `c` for `request` that explores.
fn first_exploration(c: &Controller, request: TransferRequest) -> Decision {
    (0..1000)
        .map(|_| c.decide(&request, &idle()))
        .find(|d| d.reason.is_exploration())
        .expect("an exploration within 1000 draws at rate 0.5")
}

/// A classifier sure that zero-copy is faster.
struct Sure;

impl MethodClassifier for Sure {
    fn name(&self) -> &str {
        "sure"
    }
    fn classify(&self, _request: &TransferRequest, _ctx: &DecisionContext) -> Option<Verdict> {
        Some(Verdict {
            method: Method::ZeroCopy,
            confidence: 0.93,
            model_version: 3,
        })
    }
}

#[test]
fn rationale_of_every_reason() {
    use Method::{Grpc, ZeroCopy};
    let (ml, scripted) = (name("ml"), name("scripted"));
    let mut cfg = config_with_large_grpc_rule();
    add_pool(&mut cfg, ml, settings());
    add_pool(&mut cfg, scripted, settings());
    let c = Controller::builder(cfg)
        .metrics(FakeQuery::new(9_000.0))
        .function(
            name("slow-grpc"),
            15,
            &[scripted],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    // Copying into a segment costs almost what gRPC does, for a small gain.
    let mut close = config_with(settings());
    close.costs.memcpy_ns_per_byte = 0.95;
    let marginal = Controller::new(close).unwrap();
    let explorer = Controller::builder(config_with(PoolSettings {
        exploration_rate: 0.5,
        ..PoolSettings::default()
    }))
    .seed(3)
    .build()
    .unwrap();

    let learned = Controller::builder(config_with(settings()))
        .classifier(Arc::new(Sure))
        .build()
        .unwrap();

    let big = TransferRequest::new(256 * MIB);
    let size = TransferRequest::new;
    #[rustfmt::skip]
    let decisions: Vec<(&str, Decision)> = vec![
        ("override", c.decide(&big.with_override(Grpc), &idle())),
        ("remote", c.decide(&big.with_locality(Locality::Remote), &idle())),
        ("unavailable", c.decide(&big, &ctx(IDLE, ZeroCopyAvailability::Unavailable))),
        ("rule", c.decide(&big, &idle())),
        ("function", c.decide(&size(4 * MIB).with_pool(scripted), &idle())),
        ("fixed", FixedPolicy(ZeroCopy).decide(&size(4 * KIB), &idle())),
        ("below floor", c.decide(&size(4 * KIB), &idle())),
        ("above ceiling", c.decide(&size(2 * GIB).with_pool(ml), &idle())),
        ("below threshold", c.decide(&size(6 * MIB), &idle())),
        ("cost analysis zero-copy", c.decide(&big.with_pool(ml), &idle())),
        ("cost analysis grpc", c.decide(&size(12 * MIB), &ctx(FULL_MEMORY, Fresh))),
        ("marginal gain", marginal.decide(&size(12 * MIB), &idle())),
        ("learned", learned.decide(&size(4 * MIB), &idle())),
        ("exploration", first_exploration(&explorer, size(12 * MIB))),
    ];
    let mut text = String::new();
    for (label, d) in &decisions {
        writeln!(text, "{label} ({}): {}", d.reason.code(), d.rationale()).unwrap();
    }
    let codes: Vec<ReasonCode> = decisions.iter().map(|(_, d)| d.reason.code()).collect();
    for code in ReasonCode::ALL {
        assert!(codes.contains(&code), "no rationale for {code}:\n{text}");
    }

    // The shape of the cost-analysis rationale for 256 MiB in pool ml.
    let (_, ml_big) = decisions
        .iter()
        .find(|(label, _)| *label == "cost analysis zero-copy")
        .unwrap();
    assert_eq!(
        ml_big.rationale().to_string(),
        "zero-copy: 22x lower estimated latency (13.5 ms vs 294 ms) and 50 % less memory; \
         pool ml, goal minimize_latency"
    );
    insta::assert_snapshot!("rationales", text);
}

/// When the chosen method costs more in some resource, the rationale must say
/// how much more relative to the cheaper method: 24 MiB of gRPC buffers
/// against a 12 MiB segment is 100 % more memory (not "50 % more"), and
/// 33.3 ms against 21.7 ms is 53 % higher latency (not "35 % higher").
/// `compare` in decision.rs divides by the larger value in both cases.
#[test]
fn rationale_states_how_much_dearer_the_chosen_method_is() {
    let (c, pools) = goal_pools();
    let pool_of = |goal: Goal| pools.iter().find(|(g, _)| *g == goal).unwrap().1;

    // gRPC chosen, holding twice the memory of the fresh segment.
    let request = TransferRequest::new(12 * MIB).with_pool(pool_of(Goal::MinimizeLatency));
    let d = expect(
        &c,
        request,
        ctx(FULL_MEMORY, Fresh),
        Method::Grpc,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    assert_eq!(
        (e.grpc.memory_bytes, e.zero_copy.memory_bytes),
        (24 * MIB, 12 * MIB)
    );
    let text = d.rationale().to_string();
    assert!(
        text.contains("100 % more memory") || text.contains("2.0x more memory"),
        "gRPC holds twice the memory of zero-copy here: {text}"
    );

    // Zero-copy chosen for memory, at a latency 1.53 times gRPC's.
    let request = TransferRequest::new(12 * MIB).with_pool(pool_of(Goal::MinimizeMemory));
    let d = expect(
        &c,
        request,
        ctx(BUSY_AND_FULL, Fresh),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    let ratio = e.zero_copy.latency_us / e.grpc.latency_us;
    assert!((ratio - 1.53).abs() < 0.01, "{ratio}");
    let text = d.rationale().to_string();
    assert!(
        text.contains("53 % higher estimated latency")
            || text.contains("1.5x higher estimated latency"),
        "zero-copy is 53 % slower than gRPC here: {text}"
    );
}
