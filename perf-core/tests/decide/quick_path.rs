//! The quick path: below the floor gRPC and above the ceiling zero-copy, whatever the goal,
//! load and availability.

use perf_core::ZeroCopyAvailability::{Fresh, Pooled};
use perf_core::{Method, Reason, ReasonCode, TransferRequest};

use crate::support::{GIB, KIB, LOADS, MIB, ctx, expect, goal_pools, idle};

#[test]
fn the_quick_path_ignores_goal_load_and_availability() {
    let (c, pools) = goal_pools();
    for (goal, pool) in pools {
        for load in LOADS {
            for zc in [Pooled, Fresh] {
                for size in [0, 4 * KIB, MIB - 1] {
                    let d = expect(
                        &c,
                        TransferRequest::new(size).with_pool(pool),
                        ctx(load, zc),
                        Method::Grpc,
                        ReasonCode::BelowFloor,
                    );
                    assert_eq!(d.reason, Reason::BelowFloor { floor: MIB });
                    assert_eq!(d.goal, goal);
                }
                // Above the ceiling zero-copy wins even where the cost analysis
                // would pick gRPC (a fresh segment under memory pressure).
                for size in [GIB + 1, 2 * GIB] {
                    let d = expect(
                        &c,
                        TransferRequest::new(size).with_pool(pool),
                        ctx(load, zc),
                        Method::ZeroCopy,
                        ReasonCode::AboveCeiling,
                    );
                    assert_eq!(d.reason, Reason::AboveCeiling { ceiling: GIB });
                }
            }
        }
    }
    // The bounds themselves belong to the cost analysis.
    expect(
        &c,
        TransferRequest::new(MIB),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    expect(
        &c,
        TransferRequest::new(GIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
}
