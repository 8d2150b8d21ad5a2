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

#: The extensions this worker speaks, answered in Negotiate's `features`.
FEATURES = ("reply",)
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


class ReplySegment:
    """A memory file of the worker's holding one reply: sized, sealed against shrinking and
    growing, mode 0600; mapped read-write while a handler fills it in place."""

    def __init__(self, size: int):
        self.size = size
        self.fd = os.memfd_create("perfopt-reply", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, size)
            # Allocated now, so that a full memory file system is an error here and never a
            # SIGBUS while writing.
            os.posix_fallocate(self.fd, 0, size)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
            os.fchmod(self.fd, 0o600)
            self.inode = os.fstat(self.fd).st_ino
        except BaseException:
            os.close(self.fd)
            raise
        self.mm: Optional[mmap.mmap] = None
        self.base = 0

    @staticmethod
    def mapped(size: int) -> "ReplySegment":
        """A segment of `size` bytes (at least 1) mapped read-write, to fill in place."""
        seg = ReplySegment(size)
        try:
            seg.mm = mmap.mmap(seg.fd, size, flags=mmap.MAP_SHARED,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            seg.close()
            raise
        seg.base = _address(memoryview(seg.mm))
        return seg

    @staticmethod
    def written(data: memoryview) -> "ReplySegment":
        """A segment holding a copy of `data` (at least 1 byte), written once."""
        seg = ReplySegment(data.nbytes)
        try:
            done = 0
            while done < data.nbytes:
                done += os.pwrite(seg.fd, data[done:], done)
        except BaseException:
            seg.close()
            raise
        return seg

    def view(self) -> memoryview:
        return memoryview(self.mm)

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


@dataclass
class HeldReply:
    """A reply the host has yet to release or fetch: bytes of a segment, or deferred bytes."""

    transfer_id: int
    length: int
    deadline: float
    segment: Optional[ReplySegment] = None
    offset: int = 0
    data: Optional[memoryview] = None

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


class ReplyStore:
    """Replies held for their hosts, by transfer id, until released, fetched or expired."""

    def __init__(self, hold_s: float = REPLY_HOLD_S, clock=time.monotonic):
        self.hold_s = hold_s
        #: The monotonic clock expiry is measured on (replaceable in tests).
        self.clock = clock
        self._lock = threading.Lock()
        self._held: Dict[int, HeldReply] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def hold(self, reply: HeldReply) -> None:
        with self._lock:
            old = self._held.pop(reply.transfer_id, None)
            self._held[reply.transfer_id] = reply
        if old is not None:
            old.close()

    def take(self, transfer_id: int) -> Optional[HeldReply]:
        """Removes and returns the reply of `transfer_id`; None when none is held or it has
        expired (and is freed)."""
        with self._lock:
            held = self._held.pop(transfer_id, None)
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
            gone = [r for r in self._held.values() if now > r.deadline]
            for r in gone:
                del self._held[r.transfer_id]
        for r in gone:
            r.close()
        return len(gone)

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for r in held:
            r.close()


def _overlaps(a: memoryview, b: Optional[memoryview]) -> bool:
    if b is None or a.nbytes == 0 or b.nbytes == 0:
        return False
    start_a, start_b = _address(a), _address(b)
    return start_a < start_b + b.nbytes and start_b < start_a + a.nbytes


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
    payload: Optional[memoryview] = None,
) -> transfer_pb2.Reply:
    """The `Reply` of an ack for `data`, placed as docs/protocol.md says: inline when small
    enough, else in a signed segment of the worker's (the handler's own `backing` segment when
    it filled one, else a fresh one) when the host maps one, else deferred.

    Takes `backing` over (freed, or held in `store` with the reply). `payload` is the request's
    bytes, which a deferred reply must not keep referring to after the call. Raises BadReply
    when the format and metadata cannot fit any ack.
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
            try:
                segment = ReplySegment.written(data)
            except OSError:
                segment = None  # no memory for a segment now: the host fetches the bytes
            if segment is not None and backing is not None:
                backing.close()
        if segment is not None:
            fields = ReferenceFields(
                transfer_id=transfer_id, segment=Memfd(os.getpid(), segment.fd),
                segment_inode=segment.inode, segment_len=segment.size, offset=seg_offset,
                length=n, expires_unix_ms=time.time_ns() // 1_000_000 + int(store.hold_s * 1000),
                format=fmt,
            )
            ref = msg.segment
            ref.transfer_id = transfer_id
            ref.memfd.pid, ref.memfd.fd = fields.segment.pid, fields.segment.fd
            ref.segment_inode, ref.segment_len = fields.segment_inode, fields.segment_len
            ref.offset, ref.length, ref.format = fields.offset, fields.length, fields.format
            ref.expires_unix_ms = fields.expires_unix_ms
            ref.token = sign(secret, fields)
            store.hold(HeldReply(transfer_id, n, deadline, segment=segment, offset=seg_offset))
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
