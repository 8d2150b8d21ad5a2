//! A worker and its carrier in memory, for the unit tests of the executor and the host: a real
//! [`ReferenceReader`] over in-process shared memory reads references, inline payloads are
//! checksummed, and a script says which calls are refused, broken or never answered; and a sink
//! that keeps every record.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::{MetricsSink, TransferMetrics};
use perf_platform::InProcessShm;
use tokio::sync::mpsc;

use crate::carrier::{Carrier, CarrierFuture};
use crate::grpc::{
    Ack, ClientError, Code, Endpoint, PROTOCOL_VERSION, PeerCapabilities, ReferenceHandler,
    checksum, host_id,
};
use crate::reader::ReferenceReader;
use crate::reference::{Reference, Secret};
use crate::reply::{Acked, CallMeta};

/// What the next calls of a [`MemoryCarrier`] do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    /// References are refused with this code.
    pub(crate) refuse_references: Option<Code>,
    /// References are never answered.
    pub(crate) hang_references: bool,
    /// Inline transfers are never answered.
    pub(crate) hang_inline: bool,
    /// This many inline transfers fail next as if the worker died.
    pub(crate) break_inline: u32,
    /// Acknowledgements carry a wrong checksum.
    pub(crate) corrupt: bool,
    /// The worker names the `verify` extension in negotiation (and follows what references ask).
    pub(crate) verify_feature: bool,
}

/// What a [`MemoryCarrier`]'s worker was asked.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(crate) inline: AtomicU64,
    pub(crate) references: AtomicU64,
    pub(crate) streams: AtomicU64,
    /// What the last reference asked to be hashed.
    pub(crate) last_verify: Mutex<Option<perf_core::Verification>>,
}

/// A carrier to a worker in this process.
pub(crate) struct MemoryCarrier {
    endpoint: Endpoint,
    reader: ReferenceReader,
    pub(crate) script: Arc<Mutex<Script>>,
    pub(crate) calls: Arc<Calls>,
}

/// The deadline of a call that carries no payload.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The deadline of an inline call, whatever its size.
pub(crate) const INLINE_DEADLINE: Duration = Duration::from_secs(2);

impl MemoryCarrier {
    /// A worker that maps references to `shm`'s segments signed with `secret`.
    pub(crate) fn new(shm: &InProcessShm, secret: Secret) -> MemoryCarrier {
        MemoryCarrier {
            endpoint: Endpoint::Unix(PathBuf::from("/memory/worker")),
            reader: ReferenceReader::new(Arc::new(shm.clone()), secret, None),
            script: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn script(&self) -> Script {
        self.script.lock().unwrap().clone()
    }

    fn acknowledge(&self, transfer_id: u64, bytes: &[u8]) -> Ack {
        let mut sum = checksum(bytes);
        if self.script().corrupt {
            sum ^= 1;
        }
        Ack {
            transfer_id,
            length: bytes.len() as u64,
            checksum: sum,
            worker_ns: 1,
            worker_cpu_ns: 1,
        }
    }

    async fn read(
        &self,
        call: &'static str,
        reference: &Reference,
        meta: &CallMeta,
    ) -> Result<Ack, ClientError> {
        let script = self.script();
        *self.calls.last_verify.lock().unwrap() = Some(meta.verify);
        // A worker without the extension never sees what was asked: it checksums everything.
        let verify = if script.verify_feature {
            meta.verify
        } else {
            perf_core::Verification::Checksum
        };
        if script.hang_references {
            std::future::pending::<()>().await;
        }
        if let Some(code) = script.refuse_references {
            return Err(ClientError::Rejected {
                call,
                code,
                message: "refused by the script".into(),
            });
        }
        let mut ack =
            self.reader
                .handle(reference, verify)
                .map_err(|refusal| ClientError::Rejected {
                    call,
                    code: refusal.code,
                    message: refusal.message,
                })?;
        if script.corrupt {
            ack.checksum ^= 1;
        }
        Ok(ack)
    }
}

impl Carrier for MemoryCarrier {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn call_timeout(&self) -> Duration {
        CALL_TIMEOUT
    }

    fn inline_deadline(&self, _len: u64) -> Duration {
        INLINE_DEADLINE
    }

    fn negotiate(&self, _reply_segments: u64) -> CarrierFuture<'_, PeerCapabilities> {
        let features = if self.script().verify_feature {
            vec![crate::grpc::service::VERIFY_FEATURE.to_owned()]
        } else {
            Vec::new()
        };
        Box::pin(async move {
            Ok(PeerCapabilities {
                protocol_version: PROTOCOL_VERSION,
                pid: std::process::id(),
                host_id: host_id().to_owned(),
                zero_copy: true,
                max_inline_bytes: 1 << 30,
                max_segment_bytes: 1 << 30,
                platform: "memory".into(),
                features,
            })
        })
    }

    fn send_inline<'a>(
        &'a self,
        transfer_id: u64,
        payload: &'a [u8],
        _format: &'a str,
        _meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(async move {
            self.calls.inline.fetch_add(1, Ordering::Relaxed);
            let broken = {
                let mut script = self.script.lock().unwrap();
                let broken = script.break_inline > 0;
                script.break_inline = script.break_inline.saturating_sub(1);
                broken
            };
            if broken {
                return Err(ClientError::Unavailable {
                    call: "send_inline",
                    message: "the connection broke".into(),
                });
            }
            if self.script().hang_inline {
                std::future::pending::<()>().await;
            }
            Ok(self.acknowledge(transfer_id, payload).into())
        })
    }

    fn send_reference<'a>(
        &'a self,
        reference: &'a Reference,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(async move {
            self.calls.references.fetch_add(1, Ordering::Relaxed);
            self.read("send_reference", reference, meta)
                .await
                .map(Acked::from)
        })
    }

    fn send_reference_stream<'a>(
        &'a self,
        reference: &'a Reference,
        mut progress: mpsc::Receiver<u64>,
        meta: &'a CallMeta,
    ) -> CarrierFuture<'a, Acked> {
        Box::pin(async move {
            self.calls.streams.fetch_add(1, Ordering::Relaxed);
            let mut ready = 0;
            while let Some(next) = progress.recv().await {
                ready = next;
            }
            if ready != reference.length {
                return Err(ClientError::Rejected {
                    call: "send_reference_stream",
                    code: Code::InvalidArgument,
                    message: format!("{ready} of {} bytes announced", reference.length),
                });
            }
            self.read("send_reference_stream", reference, meta)
                .await
                .map(Acked::from)
        })
    }
}

/// Every record sent to it, in order.
#[derive(Default)]
pub(crate) struct Records(Mutex<Vec<TransferMetrics>>);

impl MetricsSink for Records {
    fn record(&self, metrics: &TransferMetrics) {
        self.0.lock().unwrap().push(*metrics);
    }
}

impl Records {
    pub(crate) fn all(&self) -> Vec<TransferMetrics> {
        self.0.lock().unwrap().clone()
    }
}
