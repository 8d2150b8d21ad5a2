"""Shared-memory references: the checks before anything is mapped, opening a memfd or named
segment, and the read-only mappings a worker keeps for pooled segments."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Union

import grpc

from . import errors
from .protocol import (
    MAX_FORMAT_LEN,
    MAX_SEGMENT_NAME_LEN,
    TOKEN_LEN,
    Memfd,
    ReferenceFields,
    token_matches,
)

NAME_RULE = re.compile(r"/[A-Za-z0-9._-]{1,254}")
OWNER_TAG = re.compile(r"/[A-Za-z0-9_.]{1,32}-([0-9]+)-([0-9]+)-([0-9]+)-[0-9a-fA-F]{32}")
# How many mappings are kept, and how many bytes they may span in all.
MAX_MAPPINGS = 64
MAX_MAPPED_BYTES = 4 << 30
# A mapping unused for this long is dropped.
MAPPING_IDLE_S = 60.0


def now_unix_ms() -> int:
    return time.time_ns() // 1_000_000


def owner_pid(name: str) -> Optional[int]:
    """The pid a segment name records as its creator, if it carries an owner tag."""
    m = OWNER_TAG.fullmatch(name)
    return int(m.group(2)) if m else None


def check_reference(
    msg, secret: Optional[bytes], peer_pid: Optional[int], max_segment_bytes: int
) -> ReferenceFields:
    """Checks a `SegmentReference` message as docs/protocol.md's table orders it (first failure
    wins), up to but not including opening the segment."""
    tid = msg.transfer_id
    if secret is None:
        raise errors.failed_precondition(
            f"reference {tid}: this worker takes no references, it was started without a secret"
        )
    if len(msg.format.encode("utf-8")) > MAX_FORMAT_LEN:
        raise errors.invalid_argument(
            f"reference {tid} has a format of {len(msg.format.encode())} bytes, "
            f"expected at most {MAX_FORMAT_LEN}"
        )
    fields = ReferenceFields.from_message(msg)
    if fields is None:
        raise errors.invalid_argument(
            f"reference {tid} names no segment, expected a memfd or a named segment"
        )
    if len(msg.token) != TOKEN_LEN:
        raise errors.unauthenticated(
            f"reference {tid} has a token of {len(msg.token)} bytes, expected {TOKEN_LEN}"
        )
    named = isinstance(fields.segment, str)
    if named and len(fields.segment.encode("utf-8")) > MAX_SEGMENT_NAME_LEN:
        raise errors.invalid_argument(
            f"reference {tid} names a segment of {len(fields.segment.encode())} bytes, "
            f"expected at most {MAX_SEGMENT_NAME_LEN}"
        )
    if not token_matches(secret, fields, msg.token):
        raise errors.unauthenticated(
            f"reference {tid} has a token that does not match its fields"
        )
    now = now_unix_ms()
    if now > fields.expires_unix_ms:
        raise errors.unauthenticated(
            f"reference {tid} expired at {fields.expires_unix_ms} ms, it is now {now} ms"
        )
    end = fields.offset + fields.length
    if end >= 1 << 64 or end > fields.segment_len:
        raise errors.out_of_range(
            f"reference {tid} reads bytes {fields.offset}..{end}, "
            f"expected them within the segment's {fields.segment_len} bytes"
        )
    if not named and peer_pid is not None and fields.segment.pid != peer_pid:
        raise errors.permission_denied(
            f"reference {tid}: segment of process {fields.segment.pid}, "
            f"expected the peer process {peer_pid}"
        )
    if fields.segment_len > max_segment_bytes:
        raise errors.resource_exhausted(
            f"reference {tid}: segment of {fields.segment_len} bytes, "
            f"expected at most {max_segment_bytes}"
        )
    if named and peer_pid is not None:
        owner = owner_pid(fields.segment) if NAME_RULE.fullmatch(fields.segment) else None
        if owner != peer_pid:
            said = "has no owner tag" if owner is None else f"belongs to process {owner}"
            raise errors.permission_denied(
                f"reference {tid}: segment {fields.segment} {said}, "
                f"expected the peer process {peer_pid}"
            )
    return fields


def _check_file(tid: int, st: os.stat_result, segment_len: int, what: str) -> None:
    if segment_len == 0:
        raise errors.permission_denied(f"reference {tid}: segment_len is 0")
    if not stat.S_ISREG(st.st_mode):
        raise errors.permission_denied(f"reference {tid}: {what} is not a regular file")
    if st.st_uid != os.getuid():
        raise errors.permission_denied(
            f"reference {tid}: {what} belongs to uid {st.st_uid}, expected {os.getuid()}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        raise errors.permission_denied(
            f"reference {tid}: {what} has mode {mode:04o}, expected 0600"
        )
    if st.st_size < segment_len:
        raise errors.permission_denied(
            f"reference {tid}: {what} holds {st.st_size} bytes, expected at least {segment_len}"
        )


def _os_refusal(tid: int, what: str, e: OSError) -> errors.Refused:
    if e.errno in (errno.ENOENT, errno.ESRCH, errno.EBADF):
        return errors.not_found(f"reference {tid}: no {what}")
    if e.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
        return errors.permission_denied(f"reference {tid}: {what} cannot be opened: {e.strerror}")
    return errors.Refused(
        grpc.StatusCode.INTERNAL,
        f"reference {tid}: opening {what} failed: {e}",
    )


def open_segment(fields: ReferenceFields, segment_dir: str) -> int:
    """Opens the segment read-only and checks its kind's rules; returns the descriptor."""
    tid = fields.transfer_id
    if isinstance(fields.segment, Memfd):
        pid, fd = fields.segment.pid, fields.segment.fd
        what = f"memfd {fd} of process {pid}"
        if fd < 0 or pid == 0:
            raise errors.not_found(f"reference {tid}: no {what}")
        path = f"/proc/{pid}/fd/{fd}"
        flags = os.O_RDONLY | os.O_CLOEXEC
    else:
        name = fields.segment
        what = f"segment {name}"
        if not NAME_RULE.fullmatch(name) or name in ("/.", "/.."):
            raise errors.permission_denied(
                f"reference {tid}: {name!r} is not a segment name, expected '/' and 1 to 254 "
                "of A-Z a-z 0-9 - _ ."
            )
        path = os.path.join(segment_dir, name[1:])
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd_out = os.open(path, flags)
    except OSError as e:
        raise _os_refusal(tid, what, e) from None
    try:
        st = os.fstat(fd_out)
        _check_file(tid, st, fields.segment_len, what)
        if isinstance(fields.segment, Memfd):
            try:
                seals = fcntl.fcntl(fd_out, fcntl.F_GET_SEALS)
            except OSError:
                raise errors.permission_denied(f"reference {tid}: {what} takes no seals") from None
            if not seals & fcntl.F_SEAL_SHRINK:
                raise errors.permission_denied(
                    f"reference {tid}: {what} is not sealed against shrinking"
                )
        if st.st_ino != fields.segment_inode:
            raise errors.failed_precondition(
                f"reference {tid}: {what} is inode {st.st_ino}, expected {fields.segment_inode}"
            )
    except BaseException:
        os.close(fd_out)
        raise
    return fd_out


SegmentKey = tuple


@dataclass
class Mapping:
    """One read-only mapping of a segment's first `length` bytes."""

    key: SegmentKey
    segment: Union[Memfd, str]
    inode: int
    length: int
    mm: mmap.mmap
    # Named segments keep their descriptor, to check before each read that the file was not
    # truncated under the mapping.
    fd: Optional[int]
    last_used: float = field(default_factory=time.monotonic)
    # Transfers reading it now; a mapping in use is never dropped.
    users: int = 0

    def check_length(self, tid: int) -> None:
        if self.fd is None:
            return
        size = os.fstat(self.fd).st_size
        if size < self.length:
            raise errors.failed_precondition(
                f"reference {tid}: segment {self.segment} shrank to {size} bytes, "
                f"{self.length} are mapped"
            )

    def released(self, segment_dir: str) -> bool:
        """Whether the host has let the segment go (its descriptor or name leads elsewhere)."""
        if isinstance(self.segment, Memfd):
            path = f"/proc/{self.segment.pid}/fd/{self.segment.fd}"
            try:
                return os.stat(path).st_ino != self.inode
            except OSError:
                return True
        try:
            path = os.path.join(segment_dir, self.segment[1:])
            return os.stat(path, follow_symlinks=False).st_ino != self.inode
        except OSError:
            return True

    def close(self) -> bool:
        """Unmaps; False while a view of it is still held elsewhere (retried later)."""
        try:
            self.mm.close()
        except BufferError:
            return False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return True


class MappingCache:
    """Recent mappings, so a pooled segment is mapped once: at most `MAX_MAPPINGS` and
    `MAX_MAPPED_BYTES` in all; `sweep` drops released and idle ones."""

    def __init__(self, segment_dir: str = "/dev/shm"):
        self.segment_dir = segment_dir
        self._lock = threading.Lock()
        self._maps: dict[SegmentKey, Mapping] = {}
        self._closing: list[Mapping] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._maps)

    def get(self, fields: ReferenceFields) -> Mapping:
        """A mapping of the reference's segment, opened and checked if not already held."""
        key = (fields.segment, fields.segment_inode, fields.segment_len)
        with self._lock:
            hit = self._maps.get(key)
            if hit is not None:
                hit.last_used = time.monotonic()
                hit.users += 1
                return hit
        fd = open_segment(fields, self.segment_dir)
        try:
            mm = mmap.mmap(fd, fields.segment_len, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as e:
            os.close(fd)
            raise errors.Refused(
                grpc.StatusCode.INTERNAL,
                f"reference {fields.transfer_id}: mapping the segment failed: {e}",
            ) from None
        named = isinstance(fields.segment, str)
        if not named:
            os.close(fd)
        mapping = Mapping(key, fields.segment, fields.segment_inode, fields.segment_len, mm,
                          fd if named else None, users=1)
        with self._lock:
            old = self._maps.get(key)
            if old is not None:
                self._closing.append(old)
            self._maps[key] = mapping
            self._evict_locked()
        return mapping

    def done(self, mapping: Mapping) -> None:
        """Says a transfer that `get` gave `mapping` has finished reading it."""
        with self._lock:
            mapping.users -= 1
            mapping.last_used = time.monotonic()

    def _evict_locked(self) -> None:
        by_age = sorted((m for m in self._maps.values() if m.users == 0),
                        key=lambda m: m.last_used)
        total = sum(m.length for m in by_age)
        while by_age and (len(self._maps) > MAX_MAPPINGS or total > MAX_MAPPED_BYTES):
            oldest = by_age.pop(0)
            del self._maps[oldest.key]
            total -= oldest.length
            self._closing.append(oldest)
        self._closing = [m for m in self._closing if m.users > 0 or not m.close()]

    def sweep(self, now: Optional[float] = None) -> int:
        """Drops mappings of released segments and those idle for a minute; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            items = list(self._maps.values())
        gone = [m for m in items if m.users == 0 and (now - m.last_used > MAPPING_IDLE_S
                or m.released(self.segment_dir))]
        with self._lock:
            for m in gone:
                if self._maps.get(m.key) is m and m.users == 0:
                    del self._maps[m.key]
                    self._closing.append(m)
            self._closing = [m for m in self._closing if m.users > 0 or not m.close()]
        return len(gone)

    def close(self) -> None:
        with self._lock:
            self._closing.extend(self._maps.values())
            self._maps.clear()
            self._closing = [m for m in self._closing if not m.close()]
