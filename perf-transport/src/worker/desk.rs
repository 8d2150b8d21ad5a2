//! The worker's side of replies: what a request asks for (its metadata), running the handler
//! with panics caught, and the replies held for their host (segments until `ReleaseReply`,
//! deferred bytes until `FetchReply`), each at most [`REPLY_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::{Body, Call, CallInfo, DEFAULT_REPLY_INLINE, Handler, MAX_REPLY_INLINE, Output};
use crate::grpc::proto::{self, Capabilities};
use crate::grpc::{MAX_FORMAT_LEN, PeerCapabilities, checksum, same_host};
use crate::handler::to_wire;
use crate::pool::SegmentPool;
use crate::reader::now_unix_ms;
use crate::reference::{Reference, Secret};

/// How long a worker holds a reply for its host: a reply segment's reference expires then, and
/// a deferred reply is dropped.
pub const REPLY_TTL: Duration = Duration::from_secs(30);

/// The trailer naming the kind of a handler's failure.
pub(crate) const HANDLER_ERROR_KEY: &str = "perfopt-handler-error";

/// What a request asks of the reply, and what it says about its payload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ask {
    pub(crate) peer: PeerKey,
    pub(crate) reply: bool,
    pub(crate) inline_max: u64,
    pub(crate) threshold: u64,
    pub(crate) info: CallInfo,
}

impl Ask {
    /// Reads the `perfopt-*` request metadata.
    pub(crate) fn from_metadata(md: &MetadataMap) -> Result<Ask, Status> {
        let text = |key: &str| -> Result<Option<String>, Status> {
            md.get(key)
                .map(|v| {
                    v.to_str().map(str::to_owned).map_err(|_| {
                        Status::invalid_argument(format!("{key} is not text, expected ASCII"))
                    })
                })
                .transpose()
        };
        let number = |key: &str| -> Result<Option<u64>, Status> {
            text(key)?
                .map(|t| {
                    t.parse::<u64>().map_err(|_| {
                        Status::invalid_argument(format!("{key} {t:?}, expected decimal bytes"))
                    })
                })
                .transpose()
        };
        let reply = text("perfopt-reply")?.is_some_and(|v| v == "1");
        let inline_max = number("perfopt-reply-inline-max")?
            .unwrap_or(DEFAULT_REPLY_INLINE)
            .min(MAX_REPLY_INLINE);
        let threshold = number("perfopt-reply-threshold")?.unwrap_or(u64::MAX);
        let shape = text("perfopt-shape")?
            .map(|t| {
                parse_shape(&t).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "perfopt-shape {t:?}, expected sizes separated by commas"
                    ))
                })
            })
            .transpose()?;
        let mut metadata = BTreeMap::new();
        for entry in md.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry
                && let Some(own) = key.as_str().strip_prefix("perfopt-meta-")
            {
                let value = value.to_str().unwrap_or_default().to_owned();
                metadata.insert(own.to_owned(), value);
            }
        }
        Ok(Ask {
            peer: PeerKey::Unknown,
            reply,
            inline_max,
            threshold,
            info: CallInfo {
                dtype: text("perfopt-dtype")?,
                shape,
                metadata,
            },
        })
    }
}

/// `1024,3` for `[1024, 3]`; the empty text for a scalar.
pub(crate) fn shape_text(shape: &[u64]) -> String {
    shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_shape(text: &str) -> Option<Vec<u64>> {
    if text.trim().is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|n| n.trim().parse().ok()).collect()
}

/// Which host a call came from: its process (Unix sockets) or its address (TCP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    Pid(i32),
    Addr(std::net::SocketAddr),
    #[default]
    Unknown,
}

impl PeerKey {
    /// The host a request came from.
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> PeerKey {
        let uds = request
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .and_then(|cred| cred.pid());
        match (uds, request.remote_addr()) {
            (Some(pid), _) => PeerKey::Pid(pid),
            (None, Some(addr)) => PeerKey::Addr(addr),
            (None, None) => PeerKey::Unknown,
        }
    }
}

/// Hosts remembered at most; past it the oldest negotiations are forgotten, and their hosts
/// get fetched replies until they negotiate again.
const MAX_HOSTS: usize = 1024;

/// What the host said in negotiation about mapping reply segments.
#[derive(Debug, Clone, Copy, Default)]
struct HostView {
    maps: bool,
    max_segment_bytes: u64,
}

/// A reply held for its host.
struct Held {
    body: Body,
    deferred: bool,
    until: Instant,
}

/// The replies of one worker.
pub(crate) struct ReplyDesk {
    pool: Option<(SegmentPool, Secret)>,
    hosts: Mutex<HashMap<PeerKey, HostView>>,
    held: Mutex<HashMap<u64, Held>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a handler's reply buffer comes from.
pub(crate) struct BufferSource<'a> {
    desk: &'a ReplyDesk,
    ask: &'a Ask,
}

impl BufferSource<'_> {
    pub(crate) fn wants_reply(&self) -> bool {
        self.ask.reply
    }

    pub(crate) fn buffer(&self, len: usize) -> super::ReplyBuffer {
        if let Some(pool) = self.desk.segment_pool(self.ask, len as u64)
            && let Ok(mut lease) = pool.acquire(len)
        {
            lease.as_mut_slice()[..len].fill(0);
            return super::ReplyBuffer {
                body: Body::Segment(lease, len),
            };
        }
        super::ReplyBuffer {
            body: Body::Heap(vec![0; len]),
        }
    }
}

impl ReplyDesk {
    pub(crate) fn new(pool: Option<(SegmentPool, Secret)>) -> ReplyDesk {
        ReplyDesk {
            pool,
            hosts: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The worker's reply segment pool, if it has one.
    pub(crate) fn pool(&self) -> Option<&SegmentPool> {
        self.pool.as_ref().map(|(p, _)| p)
    }

    /// Remembers what the host at `key` maps, as it said in negotiation.
    pub(crate) fn negotiated(&self, key: PeerKey, host: &Capabilities) {
        let peer = PeerCapabilities::from_wire(host.clone());
        let view = HostView {
            maps: host.zero_copy && same_host(&peer),
            max_segment_bytes: host.max_segment_bytes,
        };
        let mut hosts = lock(&self.hosts);
        if hosts.len() >= MAX_HOSTS && !hosts.contains_key(&key) {
            hosts.clear();
        }
        hosts.insert(key, view);
    }

    /// Replies held now (segments and deferred).
    pub(crate) fn held(&self) -> usize {
        lock(&self.held).len()
    }

    /// The pool a reply of `len` bytes goes through, when it goes by shared memory.
    fn segment_pool(&self, ask: &Ask, len: u64) -> Option<&SegmentPool> {
        let host = lock(&self.hosts)
            .get(&ask.peer)
            .copied()
            .unwrap_or_default();
        let shared = ask.reply
            && len > ask.inline_max
            && len >= ask.threshold
            && host.maps
            && len <= host.max_segment_bytes;
        self.pool().filter(|_| shared)
    }

    /// Runs `handler` on `payload` and turns what it returns into the ack's reply; a failure is
    /// the status the call ends with.
    pub(crate) fn run(
        &self,
        handler: &dyn Handler,
        transfer_id: u64,
        format: &str,
        payload: &[u8],
        ask: &Ask,
    ) -> Result<Option<proto::Reply>, Status> {
        let call = Call {
            transfer_id,
            format,
            payload,
            info: &ask.info,
            buffers: BufferSource { desk: self, ask },
        };
        let handled = catch_unwind(AssertUnwindSafe(|| handler.handle(&call)));
        let output = match handled {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(handler_failed(transfer_id, &e.kind, &e.message)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the handler panicked".to_owned());
                return Err(handler_failed(transfer_id, "panic", &message));
            }
        };
        match output {
            Some(output) if ask.reply => self.answer(transfer_id, output, ask).map(Some),
            _ => Ok(None),
        }
    }

    /// The reply message for `output`: inline, a signed segment held until released, or
    /// deferred and held until fetched.
    fn answer(&self, transfer_id: u64, output: Output, ask: &Ask) -> Result<proto::Reply, Status> {
        if output.format.len() > MAX_FORMAT_LEN {
            return Err(handler_failed(
                transfer_id,
                "bad-reply",
                &format!(
                    "reply format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                    output.format.len()
                ),
            ));
        }
        let len = output.body.bytes().len() as u64;
        let mut reply = proto::Reply {
            length: len,
            checksum: checksum(output.body.bytes()),
            format: output.format,
            metadata: output.metadata.into_iter().collect(),
            body: None,
        };
        self.sweep();
        if len <= ask.inline_max {
            let bytes = match output.body {
                Body::Heap(v) => v,
                Body::Segment(lease, len) => lease.as_slice()[..len].to_vec(),
            };
            reply.body = Some(proto::reply::Body::Inline(bytes));
            return Ok(reply);
        }
        let held_until = Instant::now() + REPLY_TTL;
        if let (Some(pool), Some((_, secret))) = (self.segment_pool(ask, len), &self.pool) {
            // A reply the handler wrote to its heap is copied once into a segment; when none can
            // be had it is fetched instead.
            let body = match output.body {
                Body::Heap(v) => match pool.acquire(v.len()) {
                    Ok(mut lease) => {
                        lease.as_mut_slice()[..v.len()].copy_from_slice(&v);
                        Body::Segment(lease, v.len())
                    }
                    Err(_) => Body::Heap(v),
                },
                segment => segment,
            };
            match body {
                Body::Segment(lease, n) => {
                    let mut reference = Reference {
                        transfer_id,
                        segment: lease.id().clone(),
                        segment_inode: lease.inode(),
                        segment_len: lease.len() as u64,
                        offset: 0,
                        length: n as u64,
                        format: reply.format.clone(),
                        expires_unix_ms: now_unix_ms() + REPLY_TTL.as_millis() as u64,
                        token: [0; 32],
                    };
                    reference.sign(secret);
                    reply.body = Some(proto::reply::Body::Segment(to_wire(&reference)));
                    self.hold(transfer_id, Body::Segment(lease, n), false, held_until);
                    return Ok(reply);
                }
                heap => {
                    self.hold(transfer_id, heap, true, held_until);
                    reply.body = Some(proto::reply::Body::Deferred(true));
                    return Ok(reply);
                }
            }
        }
        self.hold(transfer_id, output.body, true, held_until);
        reply.body = Some(proto::reply::Body::Deferred(true));
        Ok(reply)
    }

    fn hold(&self, transfer_id: u64, body: Body, deferred: bool, until: Instant) {
        lock(&self.held).insert(
            transfer_id,
            Held {
                body,
                deferred,
                until,
            },
        );
    }

    /// Drops the replies whose host did not come for them in time.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<Held> = {
            let mut held = lock(&self.held);
            let ids: Vec<u64> = held
                .iter()
                .filter(|(_, h)| h.until <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| held.remove(id)).collect()
        };
        drop(expired);
    }

    /// Takes the deferred reply of `transfer_id`, if it is held and has not expired.
    pub(crate) fn take_deferred(&self, transfer_id: u64) -> Option<Body> {
        self.sweep();
        let mut held = lock(&self.held);
        match held.get(&transfer_id) {
            Some(h) if h.deferred => held.remove(&transfer_id).map(|h| h.body),
            _ => None,
        }
    }

    /// Frees the reply segment of `transfer_id`, if it is held.
    pub(crate) fn release(&self, transfer_id: u64) {
        let released = {
            let mut held = lock(&self.held);
            match held.get(&transfer_id) {
                Some(h) if !h.deferred => held.remove(&transfer_id),
                _ => None,
            }
        };
        drop(released);
        self.sweep();
    }
}

/// The status a failed handler ends the call with.
pub(crate) fn handler_failed(transfer_id: u64, kind: &str, message: &str) -> Status {
    let kind: String = kind
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '-' })
        .collect();
    let mut md = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(kind.as_str()) {
        md.insert(HANDLER_ERROR_KEY, value);
    }
    Status::with_metadata(
        tonic::Code::Unknown,
        format!("the handler failed on transfer {transfer_id}: {kind}: {message}"),
        md,
    )
}
