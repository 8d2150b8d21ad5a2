//! The seam between the executor and the wire: what carrying a transfer asks of a connection to
//! one worker. [`WorkerClient`](crate::WorkerClient) carries over gRPC; the executor's tests
//! carry in memory, on a virtual clock.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::grpc::{Ack, ClientError, Endpoint, PeerCapabilities};
use crate::reference::Reference;

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

    /// Exchanges capabilities and returns the worker's.
    fn negotiate(&self) -> CarrierFuture<'_, PeerCapabilities>;

    /// Sends `payload` inline; the acknowledgement's id and length have been checked.
    fn send_inline<'a>(
        &'a self,
        transfer_id: u64,
        payload: &'a [u8],
        format: &'a str,
    ) -> CarrierFuture<'a, Ack>;

    /// Sends a reference to a payload already written to shared memory.
    fn send_reference<'a>(&'a self, reference: &'a Reference) -> CarrierFuture<'a, Ack>;

    /// Sends a reference to a payload still being written, then each value `progress` yields
    /// (bytes written so far), until it closes.
    fn send_reference_stream<'a>(
        &'a self,
        reference: &'a Reference,
        progress: mpsc::Receiver<u64>,
    ) -> CarrierFuture<'a, Ack>;
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
