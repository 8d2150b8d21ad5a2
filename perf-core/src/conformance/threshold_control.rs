//! The contract of every [`ThresholdControl`]: unknown pools are refused, a proposal moves the
//! pool's threshold toward its target (never past it) and the move is what a read shows next,
//! and a refused proposal changes nothing.

use super::pool;
use crate::name::Name;
use crate::request::{SystemState, Timestamp};
use crate::seams::ThresholdControl;
use crate::threshold::{Proposal, ThresholdError};

fn proposal(target: u64, secs: u64) -> Proposal<'static> {
    Proposal {
        target,
        reason: "the conformance suite's evidence",
        expected_gain: 0.125,
        at: Timestamp::from_secs(secs),
    }
}

/// A pool that is not configured is refused by reads and by proposals.
pub fn unknown_pools_are_refused(control: &dyn ThresholdControl) {
    let unknown = pool("never-configured");
    assert!(matches!(
        control.threshold(unknown, &SystemState::IDLE),
        Err(ThresholdError::UnknownPool(p)) if p == unknown.as_str()
    ));
    assert!(matches!(
        control.propose(unknown, &proposal(1 << 20, 1)),
        Err(ThresholdError::UnknownPool(_))
    ));
}

/// A proposal below the threshold lowers it toward the target, one above raises it, neither
/// past its target, and the change reports what a read shows next.
pub fn a_proposal_moves_toward_its_target(control: &dyn ThresholdControl, learning: Name) {
    let read = || {
        control
            .threshold(learning, &SystemState::IDLE)
            .unwrap()
            .effective
    };
    let before = read();
    let down = (before / 4).max(1);
    let change = control.propose(learning, &proposal(down, 1)).unwrap();
    assert_eq!(change.from_bytes, before);
    assert!(
        change.to_bytes < before && change.to_bytes >= down,
        "{before} toward {down} went to {}",
        change.to_bytes
    );
    assert_eq!(read(), change.to_bytes, "the read does not show the move");
    let lowered = read();
    let up = lowered.saturating_mul(2);
    let change = control.propose(learning, &proposal(up, 2)).unwrap();
    assert!(
        change.to_bytes > lowered && change.to_bytes <= up,
        "{lowered} toward {up} went to {}",
        change.to_bytes
    );
    assert_eq!(read(), change.to_bytes);
}

/// A zero target is refused and the threshold stays where it was.
pub fn a_refused_proposal_changes_nothing(control: &dyn ThresholdControl, learning: Name) {
    let before = control.threshold(learning, &SystemState::IDLE).unwrap();
    assert!(matches!(
        control.propose(learning, &proposal(0, 3)),
        Err(ThresholdError::InvalidTarget(_))
    ));
    assert_eq!(
        control.threshold(learning, &SystemState::IDLE).unwrap(),
        before
    );
}

/// Stamps out the [`ThresholdControl`] suite as tests in a module `$name`: `$make` is
/// evaluated once per test and gives the control; `$pool` names a pool it has configured with
/// learning on.
#[macro_export]
macro_rules! threshold_control_conformance {
    ($name:ident, $make:expr, pool: $pool:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::threshold_control as suite;

            #[test]
            fn unknown_pools_are_refused() {
                suite::unknown_pools_are_refused(&$make);
            }
            #[test]
            fn a_proposal_moves_toward_its_target() {
                suite::a_proposal_moves_toward_its_target(&$make, $pool);
            }
            #[test]
            fn a_refused_proposal_changes_nothing() {
                suite::a_refused_proposal_changes_nothing(&$make, $pool);
            }
        }
    };
}
