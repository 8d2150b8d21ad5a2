//! The host's side of replies: what a call asks for, the reply as it comes back in the
//! acknowledgement, and the [`Reply`] a caller holds: a view over the worker's mapped segment,
//! or the bytes that came inline or were fetched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::carrier::Carrier;
use crate::executor::TransferOutcome;
use crate::grpc::Ack;
use crate::reader::MappedPayload;
use crate::reference::Reference;

/// How long a dropped reply's `ReleaseReply` may take before it is given up (the worker frees
/// the segment at its expiry then).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a caller tells the worker's code about a payload, besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The caller's own metadata, sent as `perfopt-meta-<key>` (ASCII keys and values).
    pub metadata: BTreeMap<String, String>,
    /// The payload's element type (numpy's `dtype.str`, e.g. `<f4`).
    pub dtype: Option<String>,
    /// The payload's array shape.
    pub shape: Option<Vec<u64>>,
}

/// What a host asks of the worker's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyAsk {
    /// The largest reply taken inside the acknowledgement.
    pub inline_max: u64,
    /// Replies of at least this many bytes go by shared memory when the host maps them.
    pub threshold: u64,
}

/// The request metadata of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// Whether, and how, a reply is asked for.
    pub reply: Option<ReplyAsk>,
    /// What the caller says about the payload.
    pub options: CallOptions,
    /// How much of a referenced payload the worker hashes; sent only to a worker that speaks
    /// the `verify` extension (the executor asks the others for the full checksum).
    pub verify: perf_core::Verification,
}

/// Where a reply's bytes are, as the acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// In the acknowledgement.
    Inline(Vec<u8>),
    /// In a segment of the worker's.
    Segment(Reference),
    /// Held by the worker, to be fetched.
    Deferred,
}

/// A reply as the acknowledgement carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyEnvelope {
    /// Reply bytes.
    pub length: u64,
    /// XXH3-64 of the reply bytes.
    pub checksum: u64,
    /// The reply's format name.
    pub format: String,
    /// The handler's metadata about the reply.
    pub metadata: BTreeMap<String, String>,
    /// Where the bytes are.
    pub body: ReplyBody,
}

/// A worker's acknowledgement and the reply it carries, if one was asked for and made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The acknowledgement.
    pub ack: Ack,
    /// The reply.
    pub reply: Option<ReplyEnvelope>,
}

impl From<Ack> for Acked {
    fn from(ack: Ack) -> Acked {
        Acked { ack, reply: None }
    }
}

/// How a reply came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyMethod {
    /// The handler returned nothing.
    Nothing,
    /// Inside the acknowledgement.
    Inline,
    /// In a segment of the worker's, mapped read-only.
    Segment,
    /// Streamed by `FetchReply`.
    Fetched,
}

/// What the reply direction of a call measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReplyMetrics {
    /// How the reply came back.
    pub method: ReplyMethod,
    /// Reply bytes.
    pub size: u64,
    /// Time from the acknowledgement to the reply's bytes in hand (mapped and checked, or
    /// fetched), in microseconds; not part of the request's latency.
    pub latency_us: f64,
}

/// The bytes of a reply.
pub(crate) enum Held {
    Owned(Vec<u8>),
    /// The view, and what releases the segment once the view is gone.
    Mapped(
        MappedPayload,
        #[allow(dead_code, reason = "held for its Drop")] Releaser,
    ),
}

/// Releases a reply segment when its reply is dropped.
pub(crate) struct Releaser {
    pub(crate) carrier: Arc<dyn Carrier>,
    pub(crate) transfer_id: u64,
}

impl Drop for Releaser {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Without a runtime the worker frees the segment when its reference expires.
            return;
        };
        let carrier = self.carrier.clone();
        let id = self.transfer_id;
        runtime.spawn(async move {
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, carrier.release_reply(id)).await;
        });
    }
}

/// A worker's reply to one call. Its bytes are a view over the worker's segment (mapped
/// read-only, checked as a worker checks a reference) or the bytes that came inline or were
/// fetched; dropping it releases the segment without waiting.
///
/// The worker keeps a reply segment unchanged until it is released or for
/// [`REPLY_TTL`](crate::worker::REPLY_TTL) (30 s), whichever comes first: a reply held longer
/// may see the segment reused. Copy it out ([`Reply::into_vec`]) to keep it.
pub struct Reply {
    pub(crate) held: Held,
    pub(crate) format: String,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) metrics: ReplyMetrics,
    pub(crate) outcome: TransferOutcome,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("len", &self.len())
            .field("format", &self.format)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Reply {
    /// The reply's bytes (empty when the handler returned nothing).
    pub fn bytes(&self) -> &[u8] {
        match &self.held {
            Held::Owned(v) => v,
            Held::Mapped(view, _) => view.as_slice(),
        }
    }

    /// Reply bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether there are no reply bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reply's format name.
    pub fn format(&self) -> &str {
        &self.format
    }

    /// The handler's metadata about the reply (`perfopt-dtype`, `perfopt-shape`, and its own
    /// keys without the `perfopt-meta-` prefix).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The reply's element type, if the handler named one.
    pub fn dtype(&self) -> Option<&str> {
        self.metadata.get("perfopt-dtype").map(String::as_str)
    }

    /// The reply's array shape, if the handler named one.
    pub fn shape(&self) -> Option<Vec<u64>> {
        crate::worker::desk::parse_shape(self.metadata.get("perfopt-shape")?)
    }

    /// How the reply came back, its size and latency.
    pub fn metrics(&self) -> &ReplyMetrics {
        &self.metrics
    }

    /// The request's own outcome: decision, measured record (also sent to every sink) and ack.
    pub fn outcome(&self) -> &TransferOutcome {
        &self.outcome
    }

    /// The bytes as an owned vector: a copy for a mapped reply (which is released then).
    pub fn into_vec(self) -> Vec<u8> {
        match self.held {
            Held::Owned(v) => v,
            Held::Mapped(view, _) => view.as_slice().to_vec(),
        }
    }
}

/// The handler's metadata as a caller sees it: its own keys lose the `perfopt-meta-` prefix.
pub(crate) fn caller_metadata(
    wire: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    wire.into_iter()
        .map(|(k, v)| match k.strip_prefix("perfopt-meta-") {
            Some(own) => (own.to_owned(), v),
            None => (k, v),
        })
        .collect()
}
