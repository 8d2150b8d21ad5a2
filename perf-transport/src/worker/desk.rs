//! The worker's side of replies: what a request asks for (its metadata), running the handler
//! with panics caught, and the replies held for their host (segments until `ReleaseReply`,
//! deferred bytes until `FetchReply`), each at most [`REPLY_TTL`], and within
//! [`HeldReplyLimits`]: past them a reply is refused with `RESOURCE_EXHAUSTED`.

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
/// The trailer of a reply refused because the worker holds too many replies, and its value.
pub(crate) const REPLY_REFUSED_KEY: &str = "perfopt-reply-refused";
pub(crate) const REPLY_REFUSED_HELD: &str = "held-replies";

/// Replies a worker holds for its hosts at once unless configured otherwise.
pub(crate) const DEFAULT_MAX_HELD_REPLIES: usize = 1024;
/// Bytes of replies a worker holds for its hosts at once unless configured otherwise (4 GiB).
pub(crate) const DEFAULT_MAX_HELD_BYTES: u64 = 4 << 30;

/// How much a worker holds for hosts that have yet to release or fetch their replies: reply
/// segments (counted by their whole length) and deferred replies (by their bytes). Past either
/// bound the replies whose time is up are dropped first; a reply that still does not fit fails
/// its call with `RESOURCE_EXHAUSTED` and the trailer `perfopt-reply-refused: held-replies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldReplyLimits {
    /// Most replies held at once (`max_held_replies`).
    pub(crate) max_replies: usize,
    /// Most bytes held at once (`max_held_bytes`).
    pub(crate) max_bytes: u64,
}

impl Default for HeldReplyLimits {
    fn default() -> HeldReplyLimits {
        HeldReplyLimits {
            max_replies: DEFAULT_MAX_HELD_REPLIES,
            max_bytes: DEFAULT_MAX_HELD_BYTES,
        }
    }
}

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

impl Held {
    /// The memory it keeps: a segment's whole length, or the heap bytes.
    fn bytes(&self) -> u64 {
        match &self.body {
            Body::Heap(v) => v.len() as u64,
            Body::Segment(lease, _) => lease.len() as u64,
        }
    }
}

/// The replies held, and the bytes they keep.
#[derive(Default)]
struct Shelf {
    replies: HashMap<u64, Held>,
    bytes: u64,
}

impl Shelf {
    fn remove(&mut self, transfer_id: u64) -> Option<Held> {
        let held = self.replies.remove(&transfer_id)?;
        self.bytes -= held.bytes();
        Some(held)
    }

    /// Takes out the replies whose time is up at `now`.
    fn expired(&mut self, now: Instant) -> Vec<Held> {
        let ids: Vec<u64> = self
            .replies
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    fn fits(&self, bytes: u64, limits: HeldReplyLimits) -> bool {
        self.replies.len() < limits.max_replies
            && self.bytes.saturating_add(bytes) <= limits.max_bytes
    }
}

/// The replies of one worker.
pub(crate) struct ReplyDesk {
    pool: Option<(SegmentPool, Secret)>,
    hosts: Mutex<HashMap<PeerKey, HostView>>,
    held: Mutex<Shelf>,
    limits: HeldReplyLimits,
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
    /// A desk holding replies within `limits`.
    pub(crate) fn with_limits(
        pool: Option<(SegmentPool, Secret)>,
        limits: HeldReplyLimits,
    ) -> ReplyDesk {
        ReplyDesk {
            pool,
            hosts: Mutex::new(HashMap::new()),
            held: Mutex::new(Shelf::default()),
            limits,
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
        lock(&self.held).replies.len()
    }

    /// Bytes the held replies keep.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> u64 {
        lock(&self.held).bytes
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
                    self.hold(transfer_id, Body::Segment(lease, n), false, held_until)?;
                    reply.body = Some(proto::reply::Body::Segment(to_wire(&reference)));
                    return Ok(reply);
                }
                heap => {
                    self.hold(transfer_id, heap, true, held_until)?;
                    reply.body = Some(proto::reply::Body::Deferred(true));
                    return Ok(reply);
                }
            }
        }
        self.hold(transfer_id, output.body, true, held_until)?;
        reply.body = Some(proto::reply::Body::Deferred(true));
        Ok(reply)
    }

    /// Holds `body` for the host until `until`, in place of an earlier reply of the same
    /// transfer; past the limits (once the expired replies are dropped) it is dropped and the
    /// call refused.
    fn hold(
        &self,
        transfer_id: u64,
        body: Body,
        deferred: bool,
        until: Instant,
    ) -> Result<(), Status> {
        let held = Held {
            body,
            deferred,
            until,
        };
        let bytes = held.bytes();
        let mut dropped = Vec::new();
        let refused = {
            let mut shelf = lock(&self.held);
            dropped.extend(shelf.remove(transfer_id));
            if !shelf.fits(bytes, self.limits) {
                dropped.extend(shelf.expired(Instant::now()));
            }
            if shelf.fits(bytes, self.limits) {
                shelf.bytes += bytes;
                shelf.replies.insert(transfer_id, held);
                None
            } else {
                Some((held, shelf.replies.len(), shelf.bytes))
            }
        };
        drop(dropped);
        let Some((held, count, held_bytes)) = refused else {
            return Ok(());
        };
        drop(held);
        let mut md = MetadataMap::new();
        md.insert(
            REPLY_REFUSED_KEY,
            MetadataValue::from_static(REPLY_REFUSED_HELD),
        );
        Err(Status::with_metadata(
            tonic::Code::ResourceExhausted,
            format!(
                "transfer {transfer_id}: no room to hold a reply of {bytes} bytes: the worker \
                 holds {count} replies of {held_bytes} bytes for their hosts, at most {} replies \
                 and {} bytes (max_held_replies, max_held_bytes); a held reply is freed when its \
                 host releases or fetches it, or after {} s",
                self.limits.max_replies,
                self.limits.max_bytes,
                REPLY_TTL.as_secs(),
            ),
            md,
        ))
    }

    /// Drops the replies whose host did not come for them in time.
    pub(crate) fn sweep(&self) {
        let expired = lock(&self.held).expired(Instant::now());
        drop(expired);
    }

    /// Takes the deferred reply of `transfer_id`, if it is held and has not expired.
    pub(crate) fn take_deferred(&self, transfer_id: u64) -> Option<Body> {
        self.sweep();
        let mut shelf = lock(&self.held);
        match shelf.replies.get(&transfer_id) {
            Some(h) if h.deferred => shelf.remove(transfer_id).map(|h| h.body),
            _ => None,
        }
    }

    /// Frees the reply segment of `transfer_id`, if it is held.
    pub(crate) fn release(&self, transfer_id: u64) {
        let released = {
            let mut shelf = lock(&self.held);
            match shelf.replies.get(&transfer_id) {
                Some(h) if !h.deferred => shelf.remove(transfer_id),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use perf_platform::InProcessShm;

    use super::*;
    use crate::grpc::host_id;
    use crate::pool::SegmentPoolConfig;
    use crate::worker::HandlerError;

    /// A handler replying with `transfer_id` bytes of the value 7.
    fn sized(call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
        Ok(Some(Output::bytes(vec![7; call.transfer_id() as usize])))
    }

    fn ask() -> Ask {
        Ask {
            reply: true,
            inline_max: 1000,
            threshold: 1,
            ..Ask::default()
        }
    }

    fn desk(pool: Option<(SegmentPool, Secret)>, max_replies: usize, max_bytes: u64) -> ReplyDesk {
        let desk = ReplyDesk::with_limits(
            pool,
            HeldReplyLimits {
                max_replies,
                max_bytes,
            },
        );
        let host = Capabilities {
            protocol_version: 1,
            host_id: host_id().to_owned(),
            zero_copy: true,
            max_segment_bytes: 1 << 30,
            features: vec!["reply".to_owned()],
            ..Capabilities::default()
        };
        desk.negotiated(PeerKey::Unknown, &host);
        desk
    }

    fn body(reply: &proto::Reply) -> &'static str {
        match reply.body {
            Some(proto::reply::Body::Inline(_)) => "inline",
            Some(proto::reply::Body::Segment(_)) => "segment",
            Some(proto::reply::Body::Deferred(_)) => "deferred",
            None => "none",
        }
    }

    fn call(desk: &ReplyDesk, len: u64) -> Result<&'static str, Status> {
        let reply = desk
            .run(&sized, len, "raw", b"x", &ask())?
            .expect("a reply");
        assert_eq!(reply.length, len);
        Ok(body(&reply))
    }

    fn assert_refused_for_held_replies(status: &Status) {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            status
                .metadata()
                .get(REPLY_REFUSED_KEY)
                .and_then(|v| v.to_str().ok()),
            Some(REPLY_REFUSED_HELD),
            "{status:?}"
        );
    }

    #[test]
    fn past_max_held_replies_a_reply_is_refused_until_one_is_fetched() {
        let desk = desk(None, 2, 1 << 30);
        assert_eq!(call(&desk, 2000).unwrap(), "deferred");
        assert_eq!(call(&desk, 3000).unwrap(), "deferred");
        let refused = call(&desk, 4000).unwrap_err();
        assert_refused_for_held_replies(&refused);
        assert!(
            refused.message().starts_with(
                "transfer 4000: no room to hold a reply of 4000 bytes: the worker holds 2 \
                 replies of 5000 bytes for their hosts, at most 2 replies"
            ),
            "{refused:?}"
        );
        // An inline reply is never held, so it is never refused.
        assert_eq!(call(&desk, 10).unwrap(), "inline");
        assert_eq!(desk.held(), 2);
        assert_eq!(
            desk.take_deferred(2000).map(|b| b.bytes().len()),
            Some(2000)
        );
        assert_eq!(call(&desk, 4000).unwrap(), "deferred");
        assert_eq!((desk.held(), desk.held_bytes()), (2, 7000));
    }

    #[test]
    fn past_max_held_bytes_a_reply_is_refused_and_a_smaller_one_still_fits() {
        let desk = desk(None, 1024, 5000);
        assert_eq!(call(&desk, 3000).unwrap(), "deferred");
        assert_refused_for_held_replies(&call(&desk, 2001).unwrap_err());
        assert_eq!(call(&desk, 2000).unwrap(), "deferred");
        assert_eq!((desk.held(), desk.held_bytes()), (2, 5000));
    }

    #[test]
    fn past_the_limits_replies_whose_time_is_up_are_dropped_first() {
        let desk = desk(None, 1, 1 << 30);
        assert_eq!(call(&desk, 2000).unwrap(), "deferred");
        lock(&desk.held).replies.get_mut(&2000).unwrap().until = Instant::now();
        assert_eq!(call(&desk, 3000).unwrap(), "deferred");
        assert!(desk.take_deferred(2000).is_none());
        assert_eq!((desk.held(), desk.held_bytes()), (1, 3000));
    }

    #[test]
    fn a_reply_segment_counts_its_whole_length_and_a_refused_one_goes_back_to_the_pool() {
        let shm = Arc::new(InProcessShm::default());
        let pool = SegmentPool::new(shm, SegmentPoolConfig::default()).unwrap();
        let desk = desk(
            Some((pool.clone(), Secret::from_bytes([3; 32]))),
            1,
            1 << 30,
        );
        assert_eq!(call(&desk, 100_000).unwrap(), "segment");
        // The segment is of the 128 KiB class.
        assert_eq!(desk.held_bytes(), 128 << 10);
        assert_refused_for_held_replies(&call(&desk, 100_001).unwrap_err());
        let stats = pool.stats();
        assert_eq!((stats.created, stats.held_bytes), (2, 2 * (128 << 10)));
        desk.release(100_000);
        assert_eq!(call(&desk, 100_002).unwrap(), "segment");
        assert_eq!(pool.stats().created, 2, "the segments were reused");
    }
}
