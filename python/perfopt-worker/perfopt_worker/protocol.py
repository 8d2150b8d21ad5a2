"""Protocol version 1 of docs/protocol.md: its limits, the reference token, the checksum and the
verification a reference asks for."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import xxhash

PROTOCOL_VERSION = 1
MAX_CHUNK_SIZE = 4_194_304
MESSAGE_SLACK = 4_096
MAX_REQUEST_MESSAGE = MAX_CHUNK_SIZE + MESSAGE_SLACK
MIN_CHUNK_SIZE = 65_536
DEFAULT_CHUNK_SIZE = 1_048_576
# The largest reply a worker puts inside an ack, whatever the host asks for.
MAX_REPLY_INLINE = 4_194_304
DEFAULT_MAX_INLINE_BYTES = 1 << 30
MAX_FORMAT_LEN = 32
MAX_SEGMENT_NAME_LEN = 255
MAX_SEGMENT_BYTES = 2 << 30
DEFAULT_MAX_SEGMENT_BYTES = 1 << 30
SECRET_LEN = 32
TOKEN_LEN = 32

TRANSFER_SERVICE = "perfopt.transfer.v1.Transfer"
TOKEN_DOMAIN = b"perfopt-ref-v1"
KIND_MEMFD = 0x01
KIND_NAMED = 0x02

# The `verify` extension (docs/protocol.md, "Verification"): SegmentReference.verify.
VERIFY_CHECKSUM = 0
VERIFY_SAMPLED = 1
VERIFY_NONE = 2
VERIFICATIONS = {VERIFY_CHECKSUM: "checksum", VERIFY_SAMPLED: "sampled", VERIFY_NONE: "none"}
# The sample: a window of SAMPLE_WINDOW bytes at every multiple of SAMPLE_STRIDE, and the last
# SAMPLE_WINDOW bytes.
SAMPLE_WINDOW = 4_096
SAMPLE_STRIDE = 1_048_576

Bytes = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class Memfd:
    """A memory file: descriptor `fd` of process `pid`."""

    pid: int
    fd: int


@dataclass(frozen=True)
class ReferenceFields:
    """The signed fields of a `SegmentReference`, in the order the token signs them."""

    transfer_id: int
    segment: Union[Memfd, str]
    segment_inode: int
    segment_len: int
    offset: int
    length: int
    expires_unix_ms: int
    format: str

    @staticmethod
    def from_message(msg) -> Optional["ReferenceFields"]:
        """The fields of a `SegmentReference` message, or None when it names no segment."""
        kind = msg.WhichOneof("segment")
        if kind == "memfd":
            segment: Union[Memfd, str] = Memfd(msg.memfd.pid, msg.memfd.fd)
        elif kind == "named":
            segment = msg.named
        else:
            return None
        return ReferenceFields(
            transfer_id=msg.transfer_id,
            segment=segment,
            segment_inode=msg.segment_inode,
            segment_len=msg.segment_len,
            offset=msg.offset,
            length=msg.length,
            expires_unix_ms=msg.expires_unix_ms,
            format=msg.format,
        )


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def mac_input(fields: ReferenceFields) -> bytes:
    """The bytes the token is the HMAC of (docs/protocol.md, "The token")."""
    out = [TOKEN_DOMAIN, struct.pack("<Q", fields.transfer_id)]
    if isinstance(fields.segment, Memfd):
        out.append(struct.pack("<BIi", KIND_MEMFD, fields.segment.pid, fields.segment.fd))
    else:
        out.append(bytes([KIND_NAMED]) + _string(fields.segment))
    out.append(
        struct.pack(
            "<QQQQQ",
            fields.segment_inode,
            fields.segment_len,
            fields.offset,
            fields.length,
            fields.expires_unix_ms,
        )
    )
    out.append(_string(fields.format))
    return b"".join(out)


def sign(secret: bytes, fields: ReferenceFields) -> bytes:
    """The 32-byte token of `fields` under `secret`."""
    return hmac.new(secret, mac_input(fields), hashlib.sha256).digest()


def token_matches(secret: bytes, fields: ReferenceFields, token: bytes) -> bool:
    """Whether `token` signs `fields` under `secret`, compared in constant time."""
    return hmac.compare_digest(sign(secret, fields), token)


def checksum(data: Bytes) -> int:
    """XXH3-64 (seed 0) of `data`, the value a `TransferAck` carries."""
    return xxhash.xxh3_64_intdigest(data)


def sample_ranges(length: int, start: int = 0) -> Iterator[Tuple[int, int]]:
    """The (from, to) byte ranges of a payload of `length` bytes that the sampled verification
    hashes, in order and without overlap, from the first that ends after `start` on: a window at
    every multiple of SAMPLE_STRIDE, and the last window (one range where they overlap)."""
    if length == 0:
        return
    last = max(length - SAMPLE_WINDOW, 0)
    k = max(start - (SAMPLE_WINDOW - 1), 0) // SAMPLE_STRIDE
    while k * SAMPLE_STRIDE < last:
        begin = k * SAMPLE_STRIDE
        end = begin + SAMPLE_WINDOW
        if end >= last:
            yield begin, length
            return
        yield begin, end
        k += 1
    yield last, length


class Verifier:
    """The digest a worker acknowledges under a verification, over a payload's parts in order:
    XXH3-64 of every byte, of the sample's bytes concatenated, or 0 for none."""

    def __init__(self, verify: int, length: int):
        if verify not in VERIFICATIONS:
            raise ValueError(f"verification {verify}, expected one of {sorted(VERIFICATIONS)}")
        self.verify = verify
        self.length = length
        self._hasher = xxhash.xxh3_64()

    def update(self, offset: int, part: Bytes) -> None:
        """Adds `part`, the payload's bytes from `offset` on, right after the part before."""
        if self.verify == VERIFY_CHECKSUM:
            self._hasher.update(part)
        elif self.verify == VERIFY_SAMPLED:
            end_of_part = offset + len(part)
            for begin, end in sample_ranges(self.length, offset):
                if begin >= end_of_part:
                    break
                lo, hi = max(begin, offset), min(end, end_of_part)
                if lo < hi:
                    self._hasher.update(part[lo - offset : hi - offset])

    def intdigest(self) -> int:
        """The digest of everything added."""
        return 0 if self.verify == VERIFY_NONE else self._hasher.intdigest()


def digest(data: Bytes, verify: int) -> int:
    """What a worker acknowledges for `data` under `verify`."""
    v = Verifier(verify, len(data))
    v.update(0, data)
    return v.intdigest()
