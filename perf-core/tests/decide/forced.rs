//! Forced paths: an override, a remote worker or missing shared memory decide before
//! anything else.

use perf_core::ZeroCopyAvailability::Pooled;
use perf_core::config::Condition;
use perf_core::{
    Controller, Locality, Method, ReasonCode, SystemState, TransferRequest, ZeroCopyAvailability,
};

use crate::support::{GIB, IDLE, KIB, MIB, config_with, ctx, expect, idle, rule, settings};

#[test]
fn forced_paths_win_over_everything_else() {
    use Method::{Grpc, ZeroCopy};
    let mut cfg = config_with(settings());
    // A rule that would send everything by zero-copy: the forced step comes first.
    cfg.rules
        .push(rule("all-zero-copy", 100, ZeroCopy, Condition::default()));
    let c = Controller::new(cfg).unwrap();
    let no_shm = ctx(IDLE, ZeroCopyAvailability::Unavailable);
    let shm_short = ctx(
        SystemState {
            shm_free: 100 * MIB,
            ..IDLE
        },
        Pooled,
    );
    let big = TransferRequest::new(256 * MIB);
    let tiny = TransferRequest::new(4 * KIB);
    let huge = TransferRequest::new(2 * GIB);
    let remote = big.with_locality(Locality::Remote);
    use ReasonCode::{Override, RemoteWorker, ZeroCopyUnavailable};
    #[rustfmt::skip]
    let cases = [
        (big.with_override(Grpc), idle(), Grpc, Override),
        (huge.with_override(Grpc), idle(), Grpc, Override),
        (tiny.with_override(ZeroCopy), idle(), ZeroCopy, Override),
        (remote, idle(), Grpc, RemoteWorker),
        (remote.with_override(ZeroCopy), idle(), Grpc, RemoteWorker),
        (big, no_shm, Grpc, ZeroCopyUnavailable),
        (big, shm_short, Grpc, ZeroCopyUnavailable),
        // An override to zero-copy cannot conjure shared memory.
        (big.with_override(ZeroCopy), no_shm, Grpc, ZeroCopyUnavailable),
        (big.with_override(ZeroCopy), shm_short, Grpc, ZeroCopyUnavailable),
        // Exactly enough free shared memory is enough.
        (TransferRequest::new(100 * MIB), shm_short, ZeroCopy, ReasonCode::Rule),
    ];
    for (request, context, method, code) in cases {
        expect(&c, request, context, method, code);
    }
}
