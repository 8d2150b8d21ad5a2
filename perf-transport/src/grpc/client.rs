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
use super::proto::{InlineChunk, InlineHeader, ReferenceProgress, ReplyHandle, TransferAck};
use super::{
    CONNECTION_WINDOW, CONTROL_MESSAGE_LIMIT, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_FORMAT_LEN,
    MESSAGE_SLACK, MIN_CHUNK_SIZE, PROTOCOL_VERSION, STREAM_WINDOW,
};
use crate::carrier::{Carrier, CarrierFuture};
use crate::handler::{from_wire, to_wire, verification_to_wire};
use crate::reference::Reference;
use crate::reply::{Acked, CallMeta, ReplyBody, ReplyEnvelope, caller_metadata};

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
            // With the reply extension an ack may carry an inline reply, and a reply chunk is as
            // large as a payload chunk.
            .max_decoding_message_size(MAX_CHUNK_SIZE + MESSAGE_SLACK);
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
        self.negotiate_replies(0).await
    }

    /// As [`WorkerClient::negotiate`], saying that this host maps reply segments of up to
    /// `reply_segments` bytes (0: none). The host always offers the `reply` and `verify`
    /// extensions; the worker's [`PeerCapabilities::features`] say whether it speaks them.
    pub async fn negotiate_replies(
        &self,
        reply_segments: u64,
    ) -> Result<PeerCapabilities, ClientError> {
        const CALL: &str = "negotiate";
        let deadline = self.config.call_timeout;
        let mut request = tonic::Request::new(local_capabilities(
            reply_segments > 0,
            0,
            reply_segments,
            vec![
                crate::grpc::service::REPLY_FEATURE.to_owned(),
                crate::grpc::service::VERIFY_FEATURE.to_owned(),
            ],
        ));
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
        let acked = self
            .send_stream(transfer_id, plan.total_len, chunks, &CallMeta::default())
            .await?;
        Ok(acked.ack)
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
        let meta = CallMeta::default();
        let acked = self
            .send_inline_slice_with(transfer_id, payload, format, &meta)
            .await?;
        Ok(acked.ack)
    }

    /// As [`WorkerClient::send_inline_slice`], with `meta` as request metadata; the answer
    /// carries the worker's reply when one was asked for.
    pub async fn send_inline_slice_with(
        &self,
        transfer_id: u64,
        payload: &[u8],
        format: &str,
        meta: &CallMeta,
    ) -> Result<Acked, ClientError> {
        let header = inline_header(transfer_id, payload.len(), format)?;
        let plan = ChunkPlan::new(payload.len(), self.config.chunk_size);
        let (sender, receiver) = tokio::sync::mpsc::channel(SLICE_QUEUE);
        let call = self.send_stream(
            transfer_id,
            plan.total_len,
            tokio_stream::wrappers::ReceiverStream::new(receiver),
            meta,
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
        let meta = CallMeta::default();
        Ok(self.send_reference_with(reference, &meta).await?.ack)
    }

    /// As [`WorkerClient::send_reference`], with `meta` as request metadata.
    pub async fn send_reference_with(
        &self,
        reference: &Reference,
        meta: &CallMeta,
    ) -> Result<Acked, ClientError> {
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
        let mut wire = to_wire(reference);
        wire.verify = verification_to_wire(meta.verify);
        let mut request = tonic::Request::new(wire);
        request.set_timeout(deadline);
        apply(CALL, meta, request.metadata_mut())?;
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_reference(request)).await?;
        check_ack(CALL, &ack, transfer_id, length)?;
        acked(CALL, ack)
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
        let meta = CallMeta::default();
        let acked = self
            .send_reference_stream_with(reference, progress, &meta)
            .await?;
        Ok(acked.ack)
    }

    /// As [`WorkerClient::send_reference_stream`], with `meta` as request metadata.
    pub async fn send_reference_stream_with(
        &self,
        reference: &Reference,
        progress: tokio::sync::mpsc::Receiver<u64>,
        meta: &CallMeta,
    ) -> Result<Acked, ClientError> {
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
        let mut wire = to_wire(reference);
        wire.verify = verification_to_wire(meta.verify);
        let first = ReferenceProgress {
            reference: Some(wire),
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
        apply(CALL, meta, request.metadata_mut())?;
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_reference_stream(request)).await?;
        check_ack(CALL, &ack, transfer_id, length)?;
        acked(CALL, ack)
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
        meta: &CallMeta,
    ) -> Result<Acked, ClientError> {
        const CALL: &str = "send_inline";
        let deadline = self.inline_deadline(total_len);
        let mut request = tonic::Request::new(chunks);
        request.set_timeout(deadline);
        apply(CALL, meta, request.metadata_mut())?;
        let mut client = self.transfer.clone();
        let ack = bounded(CALL, deadline, client.send_inline(request)).await?;
        check_ack(CALL, &ack, transfer_id, total_len)?;
        acked(CALL, ack)
    }

    /// Streams the deferred reply of `transfer_id`, `length` bytes, within the deadline of an
    /// inline transfer of that size.
    pub async fn fetch_reply(&self, transfer_id: u64, length: u64) -> Result<Vec<u8>, ClientError> {
        const CALL: &str = "fetch_reply";
        let deadline = self.inline_deadline(length);
        let fetch = async {
            let mut request = tonic::Request::new(ReplyHandle { transfer_id });
            request.set_timeout(deadline);
            let mut client = self.transfer.clone();
            let mut stream = client
                .fetch_reply(request)
                .await
                .map_err(|s| ClientError::from_status(CALL, deadline, &s))?
                .into_inner();
            let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|s| ClientError::from_status(CALL, deadline, &s))?
            {
                if bytes.len() + chunk.data.len() > length as usize {
                    return Err(ClientError::Protocol {
                        call: CALL,
                        message: format!("the reply ran past its {length} bytes"),
                    });
                }
                bytes.extend_from_slice(&chunk.data);
            }
            Ok(bytes)
        };
        tokio::time::timeout(deadline, fetch)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                call: CALL,
                deadline,
            }))
    }

    /// Tells the worker that the reply segment of `transfer_id` may be freed.
    pub async fn release_reply(&self, transfer_id: u64) -> Result<(), ClientError> {
        const CALL: &str = "release_reply";
        let deadline = self.config.call_timeout;
        let mut request = tonic::Request::new(ReplyHandle { transfer_id });
        request.set_timeout(deadline);
        let mut client = self.transfer.clone();
        bounded(CALL, deadline, client.release_reply(request)).await?;
        Ok(())
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

    fn negotiate(&self, reply_segments: u64) -> CarrierFuture<'_, PeerCapabilities> {
        Box::pin(self.negotiate_replies(reply_segments))
    }

    fn send_inline<'a>(
        &'a self,
        transfer_id: u64,
        payload: &'a [u8],
        format: &'a str,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(self.send_inline_slice_with(transfer_id, payload, format, meta))
    }

    fn send_reference<'a>(
        &'a self,
        reference: &'a Reference,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(self.send_reference_with(reference, meta))
    }

    fn send_reference_stream<'a>(
        &'a self,
        reference: &'a Reference,
        progress: tokio::sync::mpsc::Receiver<u64>,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(self.send_reference_stream_with(reference, progress, meta))
    }

    fn fetch_reply(&self, transfer_id: u64, length: u64) -> CarrierFuture<'_, Vec<u8>> {
        Box::pin(WorkerClient::fetch_reply(self, transfer_id, length))
    }

    fn release_reply(&self, transfer_id: u64) -> CarrierFuture<'_, ()> {
        Box::pin(WorkerClient::release_reply(self, transfer_id))
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

/// Puts `meta` into a request's metadata.
fn apply(
    call: &'static str,
    meta: &CallMeta,
    md: &mut tonic::metadata::MetadataMap,
) -> Result<(), ClientError> {
    use tonic::metadata::{MetadataKey, MetadataValue};
    let bad = |what: String| ClientError::InvalidRequest {
        call,
        message: what,
    };
    let mut put = |key: &str, value: &str| -> Result<(), ClientError> {
        let k = MetadataKey::from_bytes(key.as_bytes()).map_err(|_| {
            bad(format!(
                "metadata key {key:?}, expected a lowercase header name"
            ))
        })?;
        let v = MetadataValue::try_from(value)
            .map_err(|_| bad(format!("metadata {key} = {value:?}, expected ASCII text")))?;
        md.insert(k, v);
        Ok(())
    };
    if let Some(ask) = &meta.reply {
        put("perfopt-reply", "1")?;
        put("perfopt-reply-inline-max", &ask.inline_max.to_string())?;
        put("perfopt-reply-threshold", &ask.threshold.to_string())?;
    }
    let options = &meta.options;
    if let Some(dtype) = &options.dtype {
        put("perfopt-dtype", dtype)?;
    }
    if let Some(shape) = &options.shape {
        put("perfopt-shape", &crate::worker::desk::shape_text(shape))?;
    }
    for (key, value) in &options.metadata {
        put(&format!("perfopt-meta-{key}"), value)?;
    }
    Ok(())
}

/// The acknowledgement and its reply, checked for a well-formed reply.
fn acked(call: &'static str, mut ack: TransferAck) -> Result<Acked, ClientError> {
    let reply = ack.reply.take().map(|r| {
        let body = match r.body {
            Some(super::proto::reply::Body::Inline(bytes)) => Ok(ReplyBody::Inline(bytes)),
            Some(super::proto::reply::Body::Segment(s)) => {
                from_wire(&s).map(ReplyBody::Segment).map_err(|e| e.message)
            }
            Some(super::proto::reply::Body::Deferred(true)) => Ok(ReplyBody::Deferred),
            // An empty reply travels as an empty inline body, which decodes as none.
            Some(super::proto::reply::Body::Deferred(false)) | None if r.length == 0 => {
                Ok(ReplyBody::Inline(Vec::new()))
            }
            _ => Err(format!("a reply of {} bytes without a body", r.length)),
        };
        body.map(|body| ReplyEnvelope {
            length: r.length,
            checksum: r.checksum,
            format: r.format,
            metadata: caller_metadata(r.metadata),
            body,
        })
    });
    let reply = reply
        .transpose()
        .map_err(|message| ClientError::Protocol { call, message })?;
    Ok(Acked {
        ack: Ack::from_wire(ack),
        reply,
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
