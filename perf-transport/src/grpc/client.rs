//! The host side of the `Transfer` service: a connection to one worker, with a deadline on every
//! call and payloads streamed in chunks under the message size limit.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::endpoint::Endpoint;
use super::error::{ClientError, ConfigError, error_chain};
use super::host::local_capabilities;
use super::messages::{Ack, PeerCapabilities};
use super::proto::transfer_client::TransferClient;
use super::proto::transfer_server::SERVICE_NAME;
use super::proto::{InlineChunk, InlineHeader, ReferenceProgress, TransferAck};
use super::{
    CONNECTION_WINDOW, CONTROL_MESSAGE_LIMIT, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_FORMAT_LEN,
    MESSAGE_SLACK, MIN_CHUNK_SIZE, PROTOCOL_VERSION, STREAM_WINDOW,
};
use crate::carrier::{Carrier, CarrierFuture};
use crate::handler::to_wire;
use crate::reference::Reference;

/// Longest timeout accepted in a [`ClientConfig`]: one hour.
const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Smallest [`ClientConfig::min_throughput`] accepted: 1 MiB/s.
const MIN_THROUGHPUT: u64 = 1 << 20;
/// Chunks copied from a borrowed slice and waiting to be sent, at most.
const SLICE_QUEUE: usize = 4;

/// How a host connects to a worker and bounds its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for the connection. Default 5 s, at most an hour.
    pub connect_timeout: Duration,
    /// Deadline of a call; an inline transfer gets more, in proportion to its size (see
    /// `min_throughput`). Default 10 s, at most an hour.
    pub call_timeout: Duration,
    /// Payload bytes per chunk message of an inline transfer. Default 1 MiB, from 64 KiB to
    /// 4 MiB.
    pub chunk_size: usize,
    /// Slowest inline throughput, in bytes per second, that still counts as working: an inline
    /// transfer of `n` bytes has a deadline of `call_timeout + n / min_throughput`. Default
    /// 64 MiB/s, at least 1 MiB/s.
    pub min_throughput: u64,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            chunk_size: DEFAULT_CHUNK_SIZE,
            min_throughput: 64 << 20,
        }
    }
}

impl ClientConfig {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("call_timeout", self.call_timeout),
        ] {
            if value.is_zero() || value > MAX_TIMEOUT {
                return Err(ConfigError::new(
                    field,
                    format!("{value:?}"),
                    format!("more than zero and at most {MAX_TIMEOUT:?}"),
                ));
            }
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ConfigError::new(
                "chunk_size",
                self.chunk_size,
                format!("from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes"),
            ));
        }
        if self.min_throughput < MIN_THROUGHPUT {
            return Err(ConfigError::new(
                "min_throughput",
                self.min_throughput,
                format!("at least {MIN_THROUGHPUT} bytes per second"),
            ));
        }
        Ok(())
    }
}

/// What a worker's health service says about its `Transfer` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerHealth {
    /// It takes transfers.
    Serving,
    /// It is shutting down or not ready.
    NotServing,
    /// It answered with a status this side does not know.
    Unknown,
}

/// A host's connection to one worker. Cloning it is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct WorkerClient {
    endpoint: Endpoint,
    config: ClientConfig,
    transfer: TransferClient<Channel>,
    health: HealthClient<Channel>,
}

impl WorkerClient {
    /// Connects to the worker at `endpoint`, within `config.connect_timeout`.
    pub async fn connect(
        endpoint: &Endpoint,
        config: ClientConfig,
    ) -> Result<WorkerClient, ClientError> {
        config.validate()?;
        let connect_error = |message: String| ClientError::Connect {
            endpoint: endpoint.to_string(),
            message,
        };
        let channel = tonic::transport::Endpoint::from_shared(endpoint.uri())
            .map_err(|err| connect_error(error_chain(&err)))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let connecting = async {
            match endpoint {
                Endpoint::Unix(path) => connect_unix(&channel, path).await,
                Endpoint::Tcp { .. } => channel.connect().await,
            }
        };
        let channel = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| {
                connect_error(format!(
                    "no connection within the connect timeout of {:?}",
                    config.connect_timeout
                ))
            })?
            .map_err(|err| connect_error(error_chain(&err)))?;
        let transfer = TransferClient::new(channel.clone())
            .max_encoding_message_size(config.chunk_size + MESSAGE_SLACK)
            .max_decoding_message_size(CONTROL_MESSAGE_LIMIT);
        let health = HealthClient::new(channel).max_decoding_message_size(CONTROL_MESSAGE_LIMIT);
        Ok(WorkerClient {
            endpoint: endpoint.clone(),
            config,
            transfer,
            health,
        })
    }

    /// The worker's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The configuration this client was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The deadline of an inline transfer of `len` bytes: `call_timeout + len / min_throughput`.
    pub fn inline_deadline(&self, len: u64) -> Duration {
        let streaming = Duration::from_secs_f64(len as f64 / self.config.min_throughput as f64);
        self.config.call_timeout.saturating_add(streaming)
    }

    /// Tells the worker this host's capabilities and returns the worker's. Whether references can
    /// go to this worker follows from them: it announces `zero_copy` and [`super::same_host`]
    /// holds.
    pub async fn negotiate(&self) -> Result<PeerCapabilities, ClientError> {
        const CALL: &str = "negotiate";
        let deadline = self.config.call_timeout;
        let mut request = tonic::Request::new(local_capabilities(false, 0, 0));
        request.set_timeout(deadline);
        let mut client = self.transfer.clone();
        let worker = bounded(CALL, deadline, client.negotiate(request)).await?;
        if worker.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::Protocol {
                call: CALL,
                message: format!(
                    "expected protocol version {PROTOCOL_VERSION}, got {}",
                    worker.protocol_version
                ),
            });
        }
        Ok(PeerCapabilities::from_wire(worker))
    }

    /// Sends `payload` inline as a stream of chunks that are slices of it (no copy on this side
    /// before encoding) and returns the worker's acknowledgement, whose length and transfer id
    /// have been checked; compare its checksum with [`super::checksum`] of the payload.
    pub async fn send_inline(
        &self,
        transfer_id: u64,
        payload: Bytes,
        format: &str,
    ) -> Result<Ack, ClientError> {
        let header = inline_header(transfer_id, payload.len(), format)?;
        let plan = ChunkPlan::new(payload.len(), self.config.chunk_size);
        let mut header = Some(header);
        let chunks = tokio_stream::iter(plan.ranges().map(move |range| InlineChunk {
            header: header.take(),
            data: payload.slice(range),
        }));
        self.send_stream(transfer_id, plan.total_len, chunks).await
    }

    /// Sends a borrowed `payload` inline: each chunk is copied once as it is sent, and at most a
    /// few chunks are held at a time, whatever the payload's size. Otherwise as
    /// [`WorkerClient::send_inline`].
    pub async fn send_inline_slice(
        &self,
        transfer_id: u64,
        payload: &[u8],
        format: &str,
    ) -> Result<Ack, ClientError> {
        let header = inline_header(transfer_id, payload.len(), format)?;
        let plan = ChunkPlan::new(payload.len(), self.config.chunk_size);
        let (sender, receiver) = tokio::sync::mpsc::channel(SLICE_QUEUE);
        let call = self.send_stream(
            transfer_id,
            plan.total_len,
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        );
        let feed = async move {
            let mut header = Some(header);
            for range in plan.ranges() {
                let chunk = InlineChunk {
                    header: header.take(),
                    data: Bytes::copy_from_slice(&payload[range]),
                };
                // The call has ended (done, refused or timed out) once nobody receives.
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
        };
        let (sent, ()) = tokio::join!(call, feed);
        sent
    }

    /// Sends a reference to a payload in shared memory; the worker checks and reads it in place.
    /// A worker without zero-copy rejects it with `FAILED_PRECONDITION`.
    pub async fn send_reference(&self, reference: &Reference) -> Result<Ack, ClientError> {
        const CALL: &str = "send_reference";
        if reference.format.len() > MAX_FORMAT_LEN {
            return Err(ClientError::InvalidRequest {
                call: CALL,
                message: format!(
                    "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                    reference.format.len()
                ),
            });
        }
        let deadline = self.config.call_timeout;
        let (transfer_id, length) = (reference.transfer_id, reference.length);
        let mut request = tonic::Request::new(to_wire(reference));
        request.set_timeout(deadline);
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_reference(request)).await?;
        check_ack(CALL, &ack, transfer_id, length)?;
        Ok(Ack::from_wire(ack))
    }

    /// Sends a reference before the payload is all written, then each value
    /// `progress` yields (bytes written so far): the worker reads each part as
    /// it is announced. The call ends when `progress` closes; the worker
    /// refuses it unless the whole payload was announced.
    pub async fn send_reference_stream(
        &self,
        reference: &Reference,
        progress: tokio::sync::mpsc::Receiver<u64>,
    ) -> Result<Ack, ClientError> {
        const CALL: &str = "send_reference_stream";
        if reference.format.len() > MAX_FORMAT_LEN {
            return Err(ClientError::InvalidRequest {
                call: CALL,
                message: format!(
                    "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                    reference.format.len()
                ),
            });
        }
        let (transfer_id, length) = (reference.transfer_id, reference.length);
        let deadline = self.inline_deadline(length);
        let first = ReferenceProgress {
            reference: Some(to_wire(reference)),
            ready: 0,
        };
        let rest =
            tokio_stream::wrappers::ReceiverStream::new(progress).map(|ready| ReferenceProgress {
                reference: None,
                ready,
            });
        let messages = tokio_stream::iter(std::iter::once(first)).chain(rest);
        let mut request = tonic::Request::new(messages);
        request.set_timeout(deadline);
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_reference_stream(request)).await?;
        check_ack(CALL, &ack, transfer_id, length)?;
        Ok(Ack::from_wire(ack))
    }

    /// Asks the worker's gRPC health service about its `Transfer` service.
    pub async fn health(&self) -> Result<WorkerHealth, ClientError> {
        const CALL: &str = "health";
        let deadline = self.config.call_timeout;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: SERVICE_NAME.to_owned(),
        });
        request.set_timeout(deadline);
        let mut client = self.health.clone();
        let answer = bounded(CALL, deadline, client.check(request)).await?;
        Ok(match ServingStatus::try_from(answer.status) {
            Ok(ServingStatus::Serving) => WorkerHealth::Serving,
            Ok(ServingStatus::NotServing) => WorkerHealth::NotServing,
            _ => WorkerHealth::Unknown,
        })
    }

    async fn send_stream(
        &self,
        transfer_id: u64,
        total_len: u64,
        chunks: impl Stream<Item = InlineChunk> + Send + 'static,
    ) -> Result<Ack, ClientError> {
        const CALL: &str = "send_inline";
        let deadline = self.inline_deadline(total_len);
        let mut request = tonic::Request::new(chunks);
        request.set_timeout(deadline);
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_inline(request)).await?;
        check_ack(CALL, &ack, transfer_id, total_len)?;
        Ok(Ack::from_wire(ack))
    }
}

impl Carrier for WorkerClient {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn call_timeout(&self) -> Duration {
        self.config.call_timeout
    }

    fn inline_deadline(&self, len: u64) -> Duration {
        WorkerClient::inline_deadline(self, len)
    }

    fn negotiate(&self) -> CarrierFuture<'_, PeerCapabilities> {
        Box::pin(WorkerClient::negotiate(self))
    }

    fn send_inline<'a>(
        &'a self,
        transfer_id: u64,
        payload: &'a [u8],
        format: &'a str,
    ) -> CarrierFuture<'a, Ack> {
        Box::pin(self.send_inline_slice(transfer_id, payload, format))
    }

    fn send_reference<'a>(&'a self, reference: &'a Reference) -> CarrierFuture<'a, Ack> {
        Box::pin(WorkerClient::send_reference(self, reference))
    }

    fn send_reference_stream<'a>(
        &'a self,
        reference: &'a Reference,
        progress: tokio::sync::mpsc::Receiver<u64>,
    ) -> CarrierFuture<'a, Ack> {
        Box::pin(WorkerClient::send_reference_stream(
            self, reference, progress,
        ))
    }
}

#[cfg(unix)]
async fn connect_unix(
    channel: &tonic::transport::Endpoint,
    path: &std::path::Path,
) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    channel.connect_with_connector(connector).await
}

#[cfg(not(unix))]
async fn connect_unix(
    channel: &tonic::transport::Endpoint,
    _path: &std::path::Path,
) -> Result<Channel, tonic::transport::Error> {
    // No Unix sockets here: the connection fails like one to a closed port.
    channel.connect().await
}

/// Runs one call under `deadline` and classifies how it ended.
async fn bounded<T>(
    call: &'static str,
    deadline: Duration,
    response: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(deadline, response).await {
        Err(_) => Err(ClientError::Timeout { call, deadline }),
        Ok(Err(status)) => Err(ClientError::from_status(call, deadline, &status)),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

fn inline_header(transfer_id: u64, len: usize, format: &str) -> Result<InlineHeader, ClientError> {
    if format.len() > MAX_FORMAT_LEN {
        return Err(ClientError::InvalidRequest {
            call: "send_inline",
            message: format!(
                "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                format.len()
            ),
        });
    }
    Ok(InlineHeader {
        transfer_id,
        total_len: len as u64,
        format: format.to_owned(),
    })
}

fn check_ack(
    call: &'static str,
    ack: &TransferAck,
    transfer_id: u64,
    length: u64,
) -> Result<(), ClientError> {
    if ack.transfer_id != transfer_id || ack.length != length {
        return Err(ClientError::Protocol {
            call,
            message: format!(
                "expected an acknowledgement of transfer {transfer_id} with {length} bytes, got \
                 transfer {} with {} bytes",
                ack.transfer_id, ack.length
            ),
        });
    }
    Ok(())
}

/// How a payload splits into chunks: at least one (the header travels in it), each at most
/// `chunk_size` bytes.
#[derive(Debug, Clone, Copy)]
struct ChunkPlan {
    len: usize,
    chunk_size: usize,
    total_len: u64,
}

impl ChunkPlan {
    fn new(len: usize, chunk_size: usize) -> ChunkPlan {
        ChunkPlan {
            len,
            chunk_size,
            total_len: len as u64,
        }
    }

    fn ranges(self) -> impl Iterator<Item = std::ops::Range<usize>> + Send + 'static {
        let count = self.len.div_ceil(self.chunk_size).max(1);
        (0..count).map(move |index| {
            let start = index * self.chunk_size;
            start..self.len.min(start + self.chunk_size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_plans_cover_the_payload_in_order() {
        let ranges: Vec<_> = ChunkPlan::new(10, 4).ranges().collect();
        assert_eq!(ranges, [0..4, 4..8, 8..10]);
        let empty: Vec<_> = ChunkPlan::new(0, 4).ranges().map(|it| it.len()).collect();
        assert_eq!(empty, [0], "an empty payload still sends the header chunk");
        let exact: Vec<_> = ChunkPlan::new(8, 4).ranges().collect();
        assert_eq!(exact, [0..4, 4..8]);
    }

    #[test]
    fn client_config_bounds_are_enforced() {
        assert_eq!(ClientConfig::default().validate(), Ok(()));
        for (config, field) in [
            (
                ClientConfig {
                    chunk_size: MIN_CHUNK_SIZE - 1,
                    ..ClientConfig::default()
                },
                "chunk_size",
            ),
            (
                ClientConfig {
                    chunk_size: MAX_CHUNK_SIZE + 1,
                    ..ClientConfig::default()
                },
                "chunk_size",
            ),
            (
                ClientConfig {
                    call_timeout: Duration::ZERO,
                    ..ClientConfig::default()
                },
                "call_timeout",
            ),
            (
                ClientConfig {
                    min_throughput: 1,
                    ..ClientConfig::default()
                },
                "min_throughput",
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
