"""The `reply` extension of docs/protocol.md on the worker's side: what the host asked for,
where a reply goes (inline, a segment of the worker's, or deferred for FetchReply), and the
replies held until the host releases or fetches them."""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterator, Mapping, Optional

import grpc
import numpy as np
import xxhash

from . import errors
from ._gen import transfer_pb2
from .protocol import (
    MAX_CHUNK_SIZE,
    MAX_REPLY_INLINE,
    MESSAGE_SLACK,
    Memfd,
    ReferenceFields,
    sign,
)

#: The extensions this worker speaks, answered in Negotiate's `features` (`verify` only when it
#: maps references).
FEATURES = ("reply", "verify")
VERIFY_FEATURE = "verify"
REPLY_KEY = "perfopt-reply"
INLINE_MAX_KEY = "perfopt-reply-inline-max"
THRESHOLD_KEY = "perfopt-reply-threshold"
CALLER_PREFIX = "perfopt-meta-"
DEFAULT_INLINE_MAX = 65_536
#: How long a reply segment or deferred reply is held for its host, at most (the protocol's
#: 30 s); its reference expires then.
REPLY_HOLD_S = 30.0
# Room in an ack for its own fields around the reply: five varints and the reply's framing.
ACK_OVERHEAD = 64
# An ack with its reply is at most this long (docs/protocol.md, "Transport").
MAX_ACK = MAX_REPLY_INLINE + MESSAGE_SLACK


def _decimal(metadata: Mapping[str, str], key: str, default: int) -> int:
    text = metadata.get(key)
    if text is None:
        return default
    if not text.isdigit():
        raise errors.invalid_argument(f"{key} is {text!r}, expected decimal bytes")
    return int(text)


@dataclass(frozen=True)
class ReplyOptions:
    """What a request's metadata asks of the reply."""

    wanted: bool = False
    #: The largest reply sent inside the ack: the host's, capped at `max_reply_inline`.
    inline_max: int = DEFAULT_INLINE_MAX
    #: Replies of at least this many bytes go by shared memory when they can; 0 when the host
    #: named no threshold.
    threshold: int = 0

    @staticmethod
    def from_metadata(metadata: Mapping[str, str]) -> "ReplyOptions":
        """Reads the `perfopt-reply*` keys; a malformed one is INVALID_ARGUMENT."""
        asked = metadata.get(REPLY_KEY)
        if asked not in (None, "0", "1"):
            raise errors.invalid_argument(f"{REPLY_KEY} is {asked!r}, expected 1")
        return ReplyOptions(
            wanted=asked == "1",
            inline_max=min(_decimal(metadata, INLINE_MAX_KEY, DEFAULT_INLINE_MAX),
                           MAX_REPLY_INLINE),
            threshold=_decimal(metadata, THRESHOLD_KEY, 0),
        )


def caller_metadata(metadata: Mapping[str, str]) -> Dict[str, str]:
    """The metadata a handler sees: the caller's `perfopt-meta-<key>` as `<key>`, and the
    payload's `perfopt-dtype` and `perfopt-shape`."""
    out = {k[len(CALLER_PREFIX):]: v for k, v in metadata.items()
           if k.startswith(CALLER_PREFIX) and len(k) > len(CALLER_PREFIX)}
    for key in ("perfopt-dtype", "perfopt-shape"):
        if key in metadata:
            out[key] = metadata[key]
    return out


@dataclass(frozen=True)
class HostReplyCaps:
    """What a host's Capabilities say about the reply segments it maps."""

    maps_segments: bool = False
    max_segment_bytes: int = 0

    @staticmethod
    def of(caps: Optional[transfer_pb2.Capabilities], host_id: str) -> "HostReplyCaps":
        """A host maps reply segments when it spoke `reply`, said `zero_copy`, and shares this
        worker's (non-empty) host id."""
        if caps is None or "reply" not in caps.features:
            return HostReplyCaps()
        same_host = bool(host_id) and caps.host_id == host_id
        maps = caps.zero_copy and same_host and caps.max_segment_bytes > 0
        return HostReplyCaps(maps, caps.max_segment_bytes if maps else 0)


def _address(view: memoryview) -> int:
    return np.frombuffer(view, dtype=np.uint8).ctypes.data


#: Reply segments are pooled in power-of-two size classes from this size (64 KiB) up.
MIN_CLASS = 64 << 10
#: The largest pooled class (256 MiB, as the Rust worker's pool); a larger reply gets a
#: segment of its own size, freed once released.
MAX_CLASS = 256 << 20
#: Free segments kept per class, and free bytes kept in all, for later replies.
MAX_FREE_PER_CLASS = 4
MAX_FREE_BYTES = 1 << 30
#: A free segment unused for this long is closed.
FREE_IDLE_S = 60.0
# Linux's MAP_POPULATE (Python 3.10 on names it).
MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)


def class_of(size: int) -> int:
    """The pooled size a segment for `size` bytes has: the smallest power of two of at least
    `size` and `MIN_CLASS`; `size` itself (rounded up to a page) above `MAX_CLASS`."""
    if size > MAX_CLASS:
        return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    return max(MIN_CLASS, 1 << (size - 1).bit_length())


class ReplySegment:
    """A memory file of the worker's holding replies: sized, sealed against shrinking and
    growing, mode 0600, and mapped read-write once for its whole life, so that the pages a
    reply is written to are faulted in only the first time."""

    def __init__(self, size: int, pool: Optional["SegmentPool"] = None):
        self.size = size
        self.pool = pool
        #: Whether every byte is still zero (a fresh file).
        self.zeroed = True
        self.last_used = time.monotonic()
        self.fd = os.memfd_create("perfopt-reply", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.mm: Optional[mmap.mmap] = None
        try:
            os.ftruncate(self.fd, size)
            # Allocated now, so that a full memory file system is an error here and never a
            # SIGBUS while writing.
            os.posix_fallocate(self.fd, 0, size)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
            os.fchmod(self.fd, 0o600)
            self.inode = os.fstat(self.fd).st_ino
            # Populated at once: one system call instead of a page fault per page written.
            self.mm = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED | MAP_POPULATE,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self.destroy()
            raise
        self.base = _address(memoryview(self.mm))

    def view(self, nbytes: Optional[int] = None) -> memoryview:
        """A writable view of the first `nbytes` (all by default)."""
        whole = memoryview(self.mm)
        return whole if nbytes is None or nbytes == self.size else whole[:nbytes]

    def fill(self, data: memoryview) -> None:
        """Copies `data` (at most `size` bytes) to the segment's start."""
        memoryview(self.mm)[:data.nbytes] = data
        self.zeroed = False

    def zero(self, nbytes: int) -> None:
        """Zeroes the first `nbytes`, unless they still are."""
        if not self.zeroed and nbytes:
            np.frombuffer(self.mm, dtype=np.uint8, count=nbytes).fill(0)

    def offset_of(self, view: memoryview) -> Optional[int]:
        """Where `view` lies in this segment's mapping, or None when it is other memory."""
        if self.mm is None or self.mm.closed or view.nbytes == 0:
            return None
        start = _address(view) - self.base
        return start if 0 <= start and start + view.nbytes <= self.size else None

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        """Bytes `offset .. offset + length`, in pieces of at most `MAX_CHUNK_SIZE`."""
        for start in range(offset, offset + length, MAX_CHUNK_SIZE):
            n = min(MAX_CHUNK_SIZE, offset + length - start)
            yield os.pread(self.fd, n, start)

    def close(self) -> None:
        """Done with it: back to its pool for a later reply, or freed."""
        if self.pool is not None:
            self.pool.give_back(self)
        else:
            self.destroy()

    def destroy(self) -> None:
        """Unmaps (unless a view of it is still held, which then keeps only the mapping alive)
        and closes the descriptor, so that the host can no longer open it."""
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SegmentPool:
    """Reply segments kept for reuse, so that a reply is written to memory that is already
    allocated and mapped (by the worker, and by a host that keeps its mappings): free segments
    in size classes (`class_of`), at most `max_free_per_class` each and `max_free_bytes` in
    all; one unused for `idle_s` is closed by `sweep`."""

    def __init__(self, max_free_per_class: int = MAX_FREE_PER_CLASS,
                 max_free_bytes: int = MAX_FREE_BYTES, idle_s: float = FREE_IDLE_S):
        self.max_free_per_class = max_free_per_class
        self.max_free_bytes = max_free_bytes
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._free: Dict[int, list] = {}
        self._free_bytes = 0
        #: Segments handed out from the free lists, and segments made.
        self.reused = 0
        self.created = 0

    def acquire(self, size: int) -> ReplySegment:
        """A segment of `class_of(size)` bytes: a free one, or a new one (OSError when the
        system has no memory or descriptors for it)."""
        cls = class_of(size)
        with self._lock:
            free = self._free.get(cls)
            if free:
                seg = free.pop()
                self._free_bytes -= seg.size
                self.reused += 1
                return seg
            self.created += 1
        return ReplySegment(cls, self if cls <= MAX_CLASS else None)

    def give_back(self, seg: ReplySegment) -> None:
        """Keeps `seg` for a later reply, or frees it when the pool is full."""
        if seg.fd < 0 or seg.mm is None:
            return
        seg.last_used = time.monotonic()
        with self._lock:
            free = self._free.setdefault(seg.size, [])
            keep = (len(free) < self.max_free_per_class
                    and self._free_bytes + seg.size <= self.max_free_bytes
                    and seg not in free)
            if keep:
                free.append(seg)
                self._free_bytes += seg.size
        if not keep:
            seg.destroy()

    def free_segments(self) -> int:
        with self._lock:
            return sum(len(f) for f in self._free.values())

    def sweep(self, now: Optional[float] = None) -> int:
        """Closes the free segments unused for `idle_s`; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            gone = [s for f in self._free.values() for s in f if now - s.last_used > self.idle_s]
            for s in gone:
                self._free[s.size].remove(s)
                self._free_bytes -= s.size
        for s in gone:
            s.destroy()
        return len(gone)

    def close(self) -> None:
        with self._lock:
            gone = [s for f in self._free.values() for s in f]
            self._free, self._free_bytes = {}, 0
        for s in gone:
            s.destroy()


@dataclass
class HeldReply:
    """A reply the host has yet to release or fetch: bytes of a segment, or deferred bytes."""

    transfer_id: int
    length: int
    deadline: float
    segment: Optional[ReplySegment] = None
    offset: int = 0
    data: Optional[memoryview] = None

    @property
    def nbytes(self) -> int:
        """The memory it keeps: its whole segment, or its bytes."""
        if self.segment is not None:
            return self.segment.size
        return 0 if self.data is None else self.data.nbytes

    def chunks(self) -> Iterator[bytes]:
        """The reply's bytes, in pieces of at most `MAX_CHUNK_SIZE`."""
        if self.data is not None:
            for start in range(0, self.length, MAX_CHUNK_SIZE):
                yield bytes(self.data[start:start + MAX_CHUNK_SIZE])
        else:
            yield from self.segment.chunks(self.offset, self.length)

    def close(self) -> None:
        self.data = None
        if self.segment is not None:
            self.segment.close()
            self.segment = None


#: How many replies a worker holds for its hosts at once, and how many bytes, unless
#: configured otherwise (docs/protocol.md, "Held replies").
DEFAULT_MAX_HELD_REPLIES = 1024
DEFAULT_MAX_HELD_BYTES = 4 << 30
#: The trailer naming why a reply could not be held.
REFUSED_KEY = "perfopt-reply-refused"
REFUSED_HELD = "held-replies"


class ReplyStore:
    """Replies held for their hosts, by transfer id, until released, fetched or expired: at
    most `max_replies` of them and `max_bytes` in all. Past either, expired ones are freed
    first; a reply that still does not fit is refused (`hold` raises RESOURCE_EXHAUSTED)."""

    def __init__(self, hold_s: float = REPLY_HOLD_S, clock=time.monotonic,
                 max_replies: int = DEFAULT_MAX_HELD_REPLIES,
                 max_bytes: int = DEFAULT_MAX_HELD_BYTES):
        self.hold_s = hold_s
        #: The monotonic clock expiry is measured on (replaceable in tests).
        self.clock = clock
        self.max_replies = max_replies
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._held: Dict[int, HeldReply] = {}
        self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def _pop_locked(self, transfer_id: int) -> Optional[HeldReply]:
        held = self._held.pop(transfer_id, None)
        if held is not None:
            self._bytes -= held.nbytes
        return held

    def _expired_locked(self, now: float) -> list:
        gone = [r for r in self._held.values() if now > r.deadline]
        for r in gone:
            self._pop_locked(r.transfer_id)
        return gone

    def hold(self, reply: HeldReply) -> None:
        """Holds `reply` (in place of an earlier one of its transfer id). When it does not fit
        even after the expired ones are freed, frees it and raises RESOURCE_EXHAUSTED with the
        trailer `perfopt-reply-refused: held-replies`."""
        n = reply.nbytes
        gone = []
        with self._lock:
            old = self._pop_locked(reply.transfer_id)
            if old is not None:
                gone.append(old)
            fits = (len(self._held) < self.max_replies and self._bytes + n <= self.max_bytes)
            if not fits:
                gone += self._expired_locked(self.clock())
                fits = (len(self._held) < self.max_replies
                        and self._bytes + n <= self.max_bytes)
            if fits:
                self._held[reply.transfer_id] = reply
                self._bytes += n
            count, held_bytes = len(self._held), self._bytes
        for r in gone:
            r.close()
        if not fits:
            reply.close()
            raise errors.Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"transfer {reply.transfer_id}: no room to hold a reply of {n} bytes: the "
                f"worker holds {count} replies of {held_bytes} bytes for their hosts, at most "
                f"{self.max_replies} replies and {self.max_bytes} bytes (max_held_replies, "
                "max_held_bytes); a held reply is freed when its host releases or fetches it, "
                f"or after {self.hold_s:g} s",
                trailers=((REFUSED_KEY, REFUSED_HELD),),
            )

    def take(self, transfer_id: int) -> Optional[HeldReply]:
        """Removes and returns the reply of `transfer_id`; None when none is held or it has
        expired (and is freed)."""
        with self._lock:
            held = self._pop_locked(transfer_id)
        if held is not None and self.clock() > held.deadline:
            held.close()
            return None
        return held

    def release(self, transfer_id: int) -> bool:
        """Frees the reply of `transfer_id`; False when none was held."""
        held = self.take(transfer_id)
        if held is not None:
            held.close()
        return held is not None

    def sweep(self, now: Optional[float] = None) -> int:
        """Frees the replies whose time is up; returns how many."""
        now = self.clock() if now is None else now
        with self._lock:
            gone = self._expired_locked(now)
        for r in gone:
            r.close()
        return len(gone)

    def close(self) -> None:
        with self._lock:
            held, self._held, self._bytes = list(self._held.values()), {}, 0
        for r in held:
            r.close()


def _overlaps(a: memoryview, b: Optional[memoryview]) -> bool:
    if b is None or a.nbytes == 0 or b.nbytes == 0:
        return False
    start_a, start_b = _address(a), _address(b)
    return start_a < start_b + b.nbytes and start_b < start_a + a.nbytes


def _reply_segment(data: memoryview, pool: SegmentPool, limit: int) -> Optional[ReplySegment]:
    """A segment of at most `limit` bytes holding a copy of `data`, pooled when its class fits
    the limit; None when no memory or descriptor can be had for one now."""
    n = data.nbytes
    try:
        if class_of(n) <= limit:
            segment = pool.acquire(n)
        else:
            segment = ReplySegment(n)
    except OSError:
        return None
    segment.fill(data)
    return segment


def build_reply(
    transfer_id: int,
    data: memoryview,
    fmt: str,
    metadata: Mapping[str, str],
    backing: Optional[ReplySegment],
    options: ReplyOptions,
    host: HostReplyCaps,
    secret: Optional[bytes],
    store: ReplyStore,
    pool: SegmentPool,
    payload: Optional[memoryview] = None,
) -> transfer_pb2.Reply:
    """The `Reply` of an ack for `data`, placed as docs/protocol.md says: inline when small
    enough, else in a signed segment of the worker's (the handler's own `backing` segment when
    it filled one, else one from `pool`) when the host maps one, else deferred.

    Takes `backing` over (given back, or held in `store` with the reply). `payload` is the
    request's bytes, which a deferred reply must not keep referring to after the call. Raises
    BadReply when the format and metadata cannot fit any ack, and RESOURCE_EXHAUSTED when
    `store` has no room to hold the reply.
    """
    n = data.nbytes
    msg = transfer_pb2.Reply(length=n, checksum=xxhash.xxh3_64_intdigest(data), format=fmt,
                             metadata=dict(metadata))
    base = msg.ByteSize() + ACK_OVERHEAD
    if n <= options.inline_max and base + n + 8 <= MAX_ACK:
        msg.inline = bytes(data)
        if backing is not None:
            backing.close()
        return msg
    if base + 512 > MAX_ACK:
        if backing is not None:
            backing.close()
        raise errors.BadReply(f"the reply's format and metadata take {msg.ByteSize()} bytes, "
                       f"expected them to fit an ack of {MAX_ACK} bytes")
    offset = None if backing is None else backing.offset_of(data)
    deadline = store.clock() + store.hold_s
    if secret is not None and host.maps_segments and n >= options.threshold:
        segment, seg_offset = None, 0
        if backing is not None and backing.size <= host.max_segment_bytes:
            segment, seg_offset = backing, offset
        elif n <= host.max_segment_bytes:
            segment = _reply_segment(data, pool, host.max_segment_bytes)
            if segment is not None and backing is not None:
                backing.close()
        if segment is not None:
            fields = ReferenceFields(
                transfer_id=transfer_id, segment=Memfd(os.getpid(), segment.fd),
                segment_inode=segment.inode, segment_len=segment.size, offset=seg_offset,
                length=n, expires_unix_ms=time.time_ns() // 1_000_000 + int(store.hold_s * 1000),
                format=fmt,
            )
            store.hold(HeldReply(transfer_id, n, deadline, segment=segment, offset=seg_offset))
            ref = msg.segment
            ref.transfer_id = transfer_id
            ref.memfd.pid, ref.memfd.fd = fields.segment.pid, fields.segment.fd
            ref.segment_inode, ref.segment_len = fields.segment_inode, fields.segment_len
            ref.offset, ref.length, ref.format = fields.offset, fields.length, fields.format
            ref.expires_unix_ms = fields.expires_unix_ms
            ref.token = sign(secret, fields)
            return msg
    if backing is not None:
        held = HeldReply(transfer_id, n, deadline, segment=backing, offset=offset)
    elif not _overlaps(data, payload):
        held = HeldReply(transfer_id, n, deadline, data=data)
    else:
        held = HeldReply(transfer_id, n, deadline, data=memoryview(bytes(data)))
    store.hold(held)
    msg.deferred = True
    return msg
