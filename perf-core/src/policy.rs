//! The steps shared by every policy: the forced step, and the route a call's reply takes.

use crate::decision::Reason;
use crate::request::{DecisionContext, TransferRequest, ZeroCopyAvailability};
use crate::vocab::{Locality, Method};

/// The forced step: caller override, remote worker, no shared memory.
pub fn forced(request: &TransferRequest, ctx: &DecisionContext) -> Option<(Method, Reason)> {
    if request.override_method == Some(Method::Grpc) {
        return Some((Method::Grpc, Reason::Override));
    }
    if request.locality == Locality::Remote {
        return Some((Method::Grpc, Reason::RemoteWorker));
    }
    if ctx.zero_copy == ZeroCopyAvailability::Unavailable || ctx.system.shm_free < request.size {
        return Some((Method::Grpc, Reason::ZeroCopyUnavailable));
    }
    if request.override_method == Some(Method::ZeroCopy) {
        return Some((Method::ZeroCopy, Reason::Override));
    }
    None
}

/// The reply size from which a call's reply comes back by shared memory (the worker sends a
/// smaller one inline when it fits the acknowledgement, else by gRPC).
///
/// Never (`u64::MAX`) when the request must not or cannot use shared memory: gRPC forced by
/// the caller, a remote worker, or no shared memory here; from the first byte (`0`, so every
/// reply past the inline limit) when the caller forced zero-copy. Otherwise `learned`, the
/// crossover measured on this pool's replies, kept within `floor..=ceiling` so that both routes
/// go on being measured; without one, `threshold`, the pool's threshold for requests.
pub fn reply_threshold(
    request: &TransferRequest,
    ctx: &DecisionContext,
    learned: Option<u64>,
    threshold: u64,
    (floor, ceiling): (u64, u64),
) -> u64 {
    if request.override_method == Some(Method::Grpc)
        || request.locality == Locality::Remote
        || ctx.zero_copy == ZeroCopyAvailability::Unavailable
    {
        return u64::MAX;
    }
    if request.override_method == Some(Method::ZeroCopy) {
        return 0;
    }
    match learned {
        Some(crossover) => crossover.clamp(floor, ceiling.max(floor)),
        None => threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Timestamp;

    fn ctx(zero_copy: ZeroCopyAvailability) -> DecisionContext {
        DecisionContext {
            zero_copy,
            ..DecisionContext::idle(Timestamp::from_secs(0))
        }
    }

    #[test]
    fn a_reply_follows_what_the_caller_forced_and_else_what_was_learned() {
        let ok = ctx(ZeroCopyAvailability::Pooled);
        let r = TransferRequest::new(1 << 20);
        let bounds = (64 << 10, 64 << 20);
        assert_eq!(reply_threshold(&r, &ok, None, 1 << 20, bounds), 1 << 20);
        assert_eq!(
            reply_threshold(&r, &ok, Some(300 << 10), 1 << 20, bounds),
            300 << 10
        );
        // A learned crossover outside the pool's bounds is held inside them.
        assert_eq!(reply_threshold(&r, &ok, Some(1), 1 << 20, bounds), 64 << 10);
        assert_eq!(
            reply_threshold(&r, &ok, Some(u64::MAX), 1 << 20, bounds),
            64 << 20
        );
        let grpc = TransferRequest {
            override_method: Some(Method::Grpc),
            ..r
        };
        assert_eq!(reply_threshold(&grpc, &ok, Some(1), 1, bounds), u64::MAX);
        let zc = TransferRequest {
            override_method: Some(Method::ZeroCopy),
            ..r
        };
        assert_eq!(reply_threshold(&zc, &ok, Some(1 << 30), 1 << 30, bounds), 0);
        let remote = TransferRequest {
            locality: Locality::Remote,
            ..zc
        };
        assert_eq!(reply_threshold(&remote, &ok, None, 1, bounds), u64::MAX);
        let none = ctx(ZeroCopyAvailability::Unavailable);
        assert_eq!(reply_threshold(&zc, &none, None, 1, bounds), u64::MAX);
    }
}
