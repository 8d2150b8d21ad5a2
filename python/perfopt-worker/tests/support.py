"""What the tests play the host with: segments made as a perfopt host makes them, signed
references, and a client channel to a worker."""

from __future__ import annotations

import fcntl
import os
import secrets
import time

import grpc

from perfopt_worker._gen import health_pb2_grpc, transfer_pb2, transfer_pb2_grpc
from perfopt_worker.protocol import Memfd, ReferenceFields, sign


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
                     ("grpc.max_send_message_length", -1)],
        )
        self.transfer = transfer_pb2_grpc.TransferStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()
