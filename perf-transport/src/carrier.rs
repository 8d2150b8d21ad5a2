//! The seam between the executor and the wire: what carrying a transfer asks of a connection to
//! one worker. [`WorkerClient`](crate::WorkerClient) carries over gRPC; the executor's tests
//! carry in memory, on a virtual clock.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::grpc::{ClientError, Endpoint, PeerCapabilities};
use crate::reference::Reference;
use crate::reply::{Acked, CallMeta};

/// The future of a carrier's call.
pub type CarrierFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// A connection to one worker that can negotiate, send a payload inline and send references to
/// shared memory. The executor bounds every call by the deadlines the carrier states, decides,
/// falls back and verifies; a carrier only moves bytes and answers.
pub trait Carrier: Send + Sync + 'static {
    /// Where the worker is, for reports.
    fn endpoint(&self) -> &Endpoint;

    /// The deadline of a call that carries no payload itself (negotiation, a reference).
    fn call_timeout(&self) -> Duration;

    /// The deadline of a call that carries `len` payload bytes as they come (inline, or a
    /// reference announced part by part).
    fn inline_deadline(&self, len: u64) -> Duration;

    /// Exchanges capabilities and returns the worker's; this host maps reply segments of up
    /// to `reply_segments` bytes (0: none).
    fn negotiate(&self, reply_segments: u64) -> CarrierFuture<'_, PeerCapabilities>;

    /// Sends `payload` inline with `meta`; the acknowledgement's id and length have been
    /// checked.
    fn send_inline<'a>(
        &'a self,
        transfer_id: u64,
        payload: &'a [u8],
        format: &'a str,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked>;

    /// Sends a reference to a payload already written to shared memory.
    fn send_reference<'a>(
        &'a self,
        reference: &'a Reference,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked>;

    /// Sends a reference to a payload still being written, then each value `progress` yields
    /// (bytes written so far), until it closes.
    fn send_reference_stream<'a>(
        &'a self,
        reference: &'a Reference,
        progress: mpsc::Receiver<u64>,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked>;

    /// Streams the deferred reply of `transfer_id`, `length` bytes. A carrier without the
    /// reply extension refuses with `UNIMPLEMENTED`.
    fn fetch_reply(&self, transfer_id: u64, length: u64) -> CarrierFuture<'_, Vec<u8>> {
        let _ = (transfer_id, length);
        Box::pin(async { Err(no_replies("fetch_reply")) })
    }

    /// Lets the worker free the reply segment of `transfer_id`. A carrier without the reply
    /// extension refuses with `UNIMPLEMENTED`.
    fn release_reply(&self, transfer_id: u64) -> CarrierFuture<'_, ()> {
        let _ = transfer_id;
        Box::pin(async { Err(no_replies("release_reply")) })
    }
}

fn no_replies(call: &'static str) -> ClientError {
    ClientError::Rejected {
        call,
        code: crate::grpc::Code::Unimplemented,
        message: "this carrier does not speak the reply extension".into(),
    }
}

/// Runs `call` under `deadline`: a call that has not ended by then is a timeout.
pub(crate) async fn bounded<T>(
    call: &'static str,
    deadline: Duration,
    future: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(deadline, future)
        .await
        .unwrap_or(Err(ClientError::Timeout { call, deadline }))
}
