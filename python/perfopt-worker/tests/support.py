"""What the tests play the host with: segments made as a perfopt host makes them, signed
references, a client channel to a worker, and the host's side of replies (negotiating them,
asking for one, checking and mapping a reply segment, fetching)."""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import stat
import time

import grpc

from perfopt_worker._gen import health_pb2_grpc, transfer_pb2, transfer_pb2_grpc
from perfopt_worker.protocol import (
    MAX_REQUEST_MESSAGE,
    Memfd,
    ReferenceFields,
    sign,
    token_matches,
)


class MemfdSegment:
    """A memory file of this process, sized, sealed against shrinking and 0600."""

    def __init__(self, data: bytes = b"", size: int = 4096, sealed: bool = True):
        self.fd = os.memfd_create("perfopt-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, size)
        os.posix_fallocate(self.fd, 0, size)
        os.pwrite(self.fd, data, 0)
        if sealed:
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        os.fchmod(self.fd, 0o600)
        self.size = size
        self.inode = os.fstat(self.fd).st_ino
        self.segment = Memfd(os.getpid(), self.fd)

    def write(self, data: bytes, offset: int = 0) -> None:
        os.pwrite(self.fd, data, offset)

    def close(self) -> None:
        os.close(self.fd)


def owner_tagged_name(pid: int) -> str:
    return f"/perfopt-0-{pid}-0-{secrets.token_hex(16)}"


class NamedSegment:
    """A file in `directory` named with an owner tag, made 0000, sized, then 0600."""

    def __init__(self, data: bytes = b"", size: int = 4096, directory: str = "/dev/shm",
                 name: str | None = None):
        self.name = name or owner_tagged_name(os.getpid())
        self.path = os.path.join(directory, self.name[1:])
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0)
        try:
            os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, size)
            os.pwrite(fd, data, 0)
            os.fchmod(fd, 0o600)
            self.inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self.size = size
        self.segment = self.name

    def write(self, data: bytes, offset: int = 0) -> None:
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def reference(secret: bytes, seg, transfer_id: int = 1, offset: int = 0, length: int | None = None,
              fmt: str = "raw", segment_len: int | None = None, expires_in_ms: int = 30_000,
              **changes) -> transfer_pb2.SegmentReference:
    """A signed reference to `seg`; `changes` replace fields after signing (a forged one)."""
    segment_len = seg.size if segment_len is None else segment_len
    length = segment_len - offset if length is None else length
    fields = ReferenceFields(
        transfer_id=transfer_id, segment=seg.segment, segment_inode=seg.inode,
        segment_len=segment_len, offset=offset, length=length,
        expires_unix_ms=time.time_ns() // 1_000_000 + expires_in_ms, format=fmt,
    )
    return message(fields, sign(secret, fields), **changes)


def message(fields: ReferenceFields, token: bytes, **changes) -> transfer_pb2.SegmentReference:
    msg = transfer_pb2.SegmentReference(
        transfer_id=fields.transfer_id, segment_inode=fields.segment_inode,
        segment_len=fields.segment_len, offset=fields.offset, length=fields.length,
        format=fields.format, expires_unix_ms=fields.expires_unix_ms, token=token,
    )
    if isinstance(fields.segment, Memfd):
        msg.memfd.pid = fields.segment.pid
        msg.memfd.fd = fields.segment.fd
    elif fields.segment is not None:
        msg.named = fields.segment
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def inline_chunks(payload: bytes, transfer_id: int = 1, chunk: int = 1 << 20, fmt: str = "raw"):
    header = transfer_pb2.InlineHeader(transfer_id=transfer_id, total_len=len(payload), format=fmt)
    yield transfer_pb2.InlineChunk(header=header, data=payload[:chunk])
    for start in range(chunk, len(payload), chunk):
        yield transfer_pb2.InlineChunk(data=payload[start:start + chunk])


class Client:
    """Stubs of both services over one channel to `endpoint`."""

    def __init__(self, endpoint: str):
        address = endpoint if endpoint.startswith("unix:") else endpoint[len("tcp:"):]
        self.channel = grpc.insecure_channel(
            address,
            options=[("grpc.default_authority", "localhost"),
                     ("grpc.max_send_message_length", -1),
                     # An ack with a reply of max_reply_inline bytes is over gRPC's default.
                     ("grpc.max_receive_message_length", MAX_REQUEST_MESSAGE)],
        )
        self.transfer = transfer_pb2_grpc.TransferStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.readline().strip()


def negotiate(client: Client, features=("reply",), zero_copy: bool = True,
              max_segment_bytes: int = 1 << 30, host_id: str | None = None):
    """Negotiates as a host that maps reply segments (unless told otherwise); returns the
    worker's Capabilities."""
    return client.transfer.Negotiate(transfer_pb2.Capabilities(
        protocol_version=1, pid=os.getpid(), host_id=boot_id() if host_id is None else host_id,
        zero_copy=zero_copy, max_segment_bytes=max_segment_bytes if zero_copy else 0,
        features=list(features), platform="test host"))


def asking(inline_max: int | None = None, threshold: int | None = None, **meta) -> tuple:
    """Request metadata asking for a reply; `meta` is the caller's, sent as perfopt-meta-*."""
    md = [("perfopt-reply", "1")]
    if inline_max is not None:
        md.append(("perfopt-reply-inline-max", str(inline_max)))
    if threshold is not None:
        md.append(("perfopt-reply-threshold", str(threshold)))
    md += [(f"perfopt-meta-{k}", v) for k, v in meta.items()]
    return tuple(md)


class ReplySegmentRefused(Exception):
    pass


class MappedReply:
    """A reply segment checked as a host checks one (token, expiry, bounds, owner, seals, mode,
    inode, as docs/protocol.md says) and mapped read-only; `data` is the reply's bytes."""

    def __init__(self, secret: bytes, ref, worker_pid: int):
        fields = ReferenceFields.from_message(ref)
        if len(ref.token) != 32 or not token_matches(secret, fields, ref.token):
            raise ReplySegmentRefused("the token does not sign the reference")
        if time.time_ns() // 1_000_000 > ref.expires_unix_ms:
            raise ReplySegmentRefused("expired")
        if ref.offset + ref.length > ref.segment_len:
            raise ReplySegmentRefused("out of the segment")
        if ref.memfd.pid != worker_pid:
            raise ReplySegmentRefused(f"a segment of {ref.memfd.pid}, not the worker's")
        self.path = f"/proc/{ref.memfd.pid}/fd/{ref.memfd.fd}"
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            if not (stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
                    and stat.S_IMODE(st.st_mode) == 0o600 and st.st_size >= ref.segment_len):
                raise ReplySegmentRefused(f"file checks: {st}")
            if not (seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW):
                raise ReplySegmentRefused(f"seals {seals:#x}")
            if st.st_ino != ref.segment_inode:
                raise ReplySegmentRefused("another inode")
            self.inode = st.st_ino
            self.mm = mmap.mmap(fd, ref.segment_len, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.data = memoryview(self.mm)[ref.offset:ref.offset + ref.length]

    def worker_holds_it(self) -> bool:
        """Whether the worker's descriptor still leads to the segment."""
        try:
            return os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            return False

    def close(self) -> None:
        """Unmaps, unless an array over `data` is still alive (then it goes with the array)."""
        try:
            self.data.release()
            self.mm.close()
        except BufferError:
            pass


def fetch(client: Client, transfer_id: int) -> list:
    """The chunks FetchReply streams for `transfer_id`."""
    return [c.data for c in client.transfer.FetchReply(
        transfer_pb2.ReplyHandle(transfer_id=transfer_id))]


def release(client: Client, transfer_id: int) -> None:
    client.transfer.ReleaseReply(transfer_pb2.ReplyHandle(transfer_id=transfer_id))
