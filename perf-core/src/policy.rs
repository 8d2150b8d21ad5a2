//! The forced step shared by every policy.

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
