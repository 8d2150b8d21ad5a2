"""The worker side of protocol version 1 and its `reply` extension: the Transfer and Health
services on grpcio."""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import grpc
import xxhash

from . import errors
from ._gen import health_pb2, transfer_pb2
from .handler import Handler, Payload, as_reply
from .protocol import (
    DEFAULT_MAX_INLINE_BYTES,
    DEFAULT_MAX_SEGMENT_BYTES,
    MAX_FORMAT_LEN,
    MAX_REQUEST_MESSAGE,
    MAX_SEGMENT_BYTES,
    PROTOCOL_VERSION,
    TRANSFER_SERVICE,
    VERIFICATIONS,
    Verifier,
)
from .replies import (
    DEFAULT_MAX_HELD_BYTES,
    DEFAULT_MAX_HELD_REPLIES,
    FEATURES,
    VERIFY_FEATURE,
    HostReplyCaps,
    ReplyOptions,
    ReplyStore,
    SegmentPool,
    build_reply,
    caller_metadata,
)
from .limits import CallGuard, InlineBudget, Watchdog
from .segments import MappingCache, check_reference

HEALTH_SERVICE = "grpc.health.v1.Health"
# The bounds of WorkerConfig's limits, the Rust worker's.
MAX_CALL_DURATION_S = 24 * 60 * 60.0
MIN_TIMEOUT_S = 0.01
MAX_CONNECTIONS = 1 << 20
# Hosts' Capabilities remembered, by peer address.
MAX_HOSTS = 1024
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class WorkerConfig:
    """What a worker accepts; the defaults are the Rust worker's."""

    #: Largest inline payload.
    max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES
    #: Inline payload bytes held by all transfers at once; a transfer beyond it waits for room
    #: within its deadline.
    max_inflight_inline_bytes: int = 2 << 30
    #: Largest segment mapped, announced in Negotiate (at most 2 GiB).
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    #: Where named segments live.
    segment_dir: str = "/dev/shm"
    #: Calls served at once (threads).
    threads: int = 16
    #: Replies held for their hosts at once (reply segments until released, deferred replies
    #: until fetched), and their bytes in all; past either a reply is refused with
    #: RESOURCE_EXHAUSTED.
    max_held_replies: int = DEFAULT_MAX_HELD_REPLIES
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES
    #: Longest any call may run, whatever deadline the host asked for (CANCELLED,
    #: `Timeout expired`).
    max_call_duration_s: float = 300.0
    #: Longest a stream may go without a message (DEADLINE_EXCEEDED).
    stream_idle_timeout_s: float = 15.0
    #: Longest an inline transfer holding room may go without a chunk while another waits for
    #: room (ABORTED: it is preempted and its room goes to the waiter); at most
    #: `stream_idle_timeout_s`.
    stall_timeout_s: float = 2.0
    #: Most connections open at once, and how long a new one may take to finish its
    #: handshake before it is closed.
    max_connections: int = 512
    handshake_timeout_s: float = 10.0

    def validate(self) -> None:
        if not 0 < self.max_segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(
                f"max_segment_bytes is {self.max_segment_bytes}, expected 1 to {MAX_SEGMENT_BYTES}"
            )
        if self.max_inflight_inline_bytes < self.max_inline_bytes:
            raise ValueError(
                f"max_inflight_inline_bytes is {self.max_inflight_inline_bytes}, expected at "
                f"least max_inline_bytes ({self.max_inline_bytes})"
            )
        if self.threads < 1:
            raise ValueError(f"threads is {self.threads}, expected at least 1")
        if not 0 < self.max_call_duration_s <= MAX_CALL_DURATION_S:
            raise ValueError(f"max_call_duration_s is {self.max_call_duration_s}, expected "
                             f"more than 0 and at most {MAX_CALL_DURATION_S:g}")
        for name, value, top in (
            ("stream_idle_timeout_s", self.stream_idle_timeout_s, MAX_CALL_DURATION_S),
            ("stall_timeout_s", self.stall_timeout_s, self.stream_idle_timeout_s),
            ("handshake_timeout_s", self.handshake_timeout_s, MAX_CALL_DURATION_S),
        ):
            if not MIN_TIMEOUT_S <= value <= top:
                raise ValueError(f"{name} is {value}, expected {MIN_TIMEOUT_S:g} to {top:g}")
        if not 0 < self.max_connections <= MAX_CONNECTIONS:
            raise ValueError(
                f"max_connections is {self.max_connections}, expected 1 to {MAX_CONNECTIONS}"
            )
        if self.max_held_replies < 1 or self.max_held_bytes < 1:
            raise ValueError(
                f"max_held_replies is {self.max_held_replies} and max_held_bytes "
                f"{self.max_held_bytes}, expected both at least 1"
            )


class _Oversize:
    """A request message over `MAX_REQUEST_MESSAGE` bytes, left undecoded."""

    def __init__(self, size: int):
        self.size = size


def _deserializer(message_type):
    def decode(raw: bytes):
        if len(raw) > MAX_REQUEST_MESSAGE:
            return _Oversize(len(raw))
        return message_type.FromString(raw)

    return decode


def _checked(message):
    if isinstance(message, _Oversize):
        raise errors.out_of_range(
            f"a request message of {message.size} bytes, expected at most {MAX_REQUEST_MESSAGE}"
        )
    return message


def _next(requests: Iterator, guard: CallGuard):
    """The next message of a client stream, None at its end; each counts as the stream's
    progress. A stream the watchdog ended raises the status it was ended with."""
    try:
        message = next(requests, None)
    except Exception:
        guard.check()
        raise
    guard.check()
    if message is not None:
        guard.progressed()
    return message


def _verification(reference) -> int:
    """The verification a `SegmentReference` asks for (extension `verify`); a value this worker
    does not know is refused before anything is mapped."""
    if reference.verify not in VERIFICATIONS:
        raise errors.invalid_argument(
            f"reference {reference.transfer_id} asks for verification {reference.verify}, "
            "expected 0 (checksum), 1 (sampled) or 2 (none)"
        )
    return reference.verify


def _stream(first, rest: Iterator, guard: CallGuard, first_only: str,
            later_error: str) -> Iterator:
    """`first`, then each later message of a client stream, checked for size; a later one
    carrying the field `first_only` is refused with `later_error`."""
    yield first
    while (message := _next(rest, guard)) is not None:
        message = _checked(message)
        if message.HasField(first_only):
            raise errors.invalid_argument(later_error)
        yield message


def boot_id() -> str:
    """The host identity Negotiate exchanges: the kernel's boot id, or empty."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.readline().strip()
    except OSError:
        return ""


class _Timer:
    def __init__(self):
        self.wall = time.monotonic_ns()
        self.cpu = time.thread_time_ns()

    def ack(self, transfer_id: int, length: int, digest: int,
            reply: Optional[transfer_pb2.Reply]) -> transfer_pb2.TransferAck:
        return transfer_pb2.TransferAck(
            transfer_id=transfer_id,
            length=length,
            checksum=digest,
            worker_ns=time.monotonic_ns() - self.wall,
            worker_cpu_ns=time.thread_time_ns() - self.cpu,
            reply=reply,
        )


def _metadata(context) -> dict:
    return {
        k: v
        for k, v in (context.invocation_metadata() or ())
        if isinstance(v, str) and not k.endswith("-bin")
    }


def _release(view: memoryview) -> None:
    try:
        view.release()
    except BufferError:
        pass  # a view the handler kept alive: the memory goes when it does


class _Call:
    """A request's metadata as the worker reads it: the reply it asks for, what the handler
    sees, and the peer whose Negotiate says where replies may go."""

    def __init__(self, context):
        raw = _metadata(context)
        self.options = ReplyOptions.from_metadata(raw)
        self.metadata = caller_metadata(raw)
        self.peer = context.peer()


class TransferServicer:
    """`perfopt.transfer.v1.Transfer` as docs/protocol.md describes it; each payload is handed
    to `handler` (when given) before it is acknowledged, with its reply when the host asks."""

    def __init__(
        self,
        config: WorkerConfig,
        handler: Optional[Handler],
        secret: Optional[bytes],
        peer_pid: Optional[int],
    ):
        config.validate()
        self.config = config
        self.handler = handler
        self.secret = secret
        self.peer_pid = peer_pid
        self.mappings = MappingCache(config.segment_dir)
        self.budget = InlineBudget(config.max_inflight_inline_bytes)
        self.watchdog = Watchdog(self.budget, config.max_call_duration_s,
                                 config.stream_idle_timeout_s, config.stall_timeout_s)
        self.replies = ReplyStore(max_replies=config.max_held_replies,
                                  max_bytes=config.max_held_bytes)
        self.reply_pool = SegmentPool()
        self.host_id = boot_id()
        # grpcio tells connections apart only by peer address: over a Unix socket every
        # connection is `unix:`, and the latest Negotiate counts for all.
        self._hosts: collections.OrderedDict = collections.OrderedDict()
        self._hosts_lock = threading.Lock()

    # The grpc method handlers: each turns a Refused into the call's status.

    def _run(self, context, body):
        with self.watchdog.watch(context) as guard:
            try:
                return body(guard)
            except errors.Refused as e:
                if guard.ended is not None:
                    return None  # the watchdog has ended the call already
                if e.trailers:
                    context.set_trailing_metadata(e.trailers)
                context.abort(e.code, e.message)

    def negotiate(self, request, context):
        return self._run(context, lambda _: self._negotiate(_checked(request), context.peer()))

    def send_inline(self, requests, context):
        return self._run(context, lambda guard: self._send_inline(requests, context, guard))

    def send_reference(self, request, context):
        return self._run(context, lambda guard: self._send_reference(request, context, guard))

    def send_reference_stream(self, requests, context):
        return self._run(
            context, lambda guard: self._send_reference_stream(requests, context, guard))

    def fetch_reply(self, request, context):
        with self.watchdog.watch(context) as guard:
            try:
                tid = _checked(request).transfer_id
            except errors.Refused as e:
                context.abort(e.code, e.message)
            held = self.replies.take(tid)
            if held is None:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"no reply is held for transfer {tid}: never made, fetched or "
                              "released already, or expired")
            try:
                for data in held.chunks():
                    if guard.ended is not None:
                        return
                    yield transfer_pb2.ReplyChunk(data=data)
            finally:
                held.close()

    def release_reply(self, request, context):
        def release(_):
            self.replies.release(_checked(request).transfer_id)
            return transfer_pb2.ReplyReleased()

        return self._run(context, release)

    def _negotiate(self, request, peer: str):
        if request.protocol_version != PROTOCOL_VERSION:
            raise errors.failed_precondition(
                f"expected protocol version {PROTOCOL_VERSION}, got {request.protocol_version}"
            )
        with self._hosts_lock:
            self._hosts.pop(peer, None)
            self._hosts[peer] = request
            while len(self._hosts) > MAX_HOSTS:
                self._hosts.popitem(last=False)
        zero_copy = self.secret is not None
        features = [
            f for f in dict.fromkeys(request.features)
            if f in FEATURES and (zero_copy or f != VERIFY_FEATURE)
        ]
        return transfer_pb2.Capabilities(
            protocol_version=PROTOCOL_VERSION,
            pid=os.getpid(),
            host_id=self.host_id,
            zero_copy=zero_copy,
            max_inline_bytes=self.config.max_inline_bytes,
            max_segment_bytes=self.config.max_segment_bytes if zero_copy else 0,
            platform=f"{platform.system().lower()} {platform.machine()} {platform.release()}",
            features=features,
        )

    def host_reply_caps(self, peer: str) -> HostReplyCaps:
        """What the Negotiate of `peer` said about the reply segments it maps."""
        with self._hosts_lock:
            caps = self._hosts.get(peer)
        return HostReplyCaps.of(caps, self.host_id)

    def _payload(self, tid: int, fmt: str, data: memoryview, method: str, call: _Call) -> Payload:
        return Payload(tid, fmt, data, method, call.metadata, call.options.wanted,
                       _pool=self.reply_pool)

    def _handle(self, payload: Payload, call: _Call) -> Optional[transfer_pb2.Reply]:
        """Runs the handler; returns the ack's reply when the host asked for one."""
        if self.handler is None:
            return None
        tid = payload.transfer_id
        try:
            try:
                reply = as_reply(self.handler(payload))
            except errors.BadReply as e:
                raise errors.HandlerFailed(tid, "bad-reply", str(e)) from None
            except Exception as e:  # a handler's failure is the transfer's, never the worker's
                raise errors.HandlerFailed(tid, type(e).__name__, str(e)) from None
            if reply is None or not call.options.wanted:
                return None
            backing = next(
                (b for b in payload._buffers if b.offset_of(reply.data) is not None), None
            )
            if backing is not None:
                payload._buffers.remove(backing)
            try:
                return build_reply(
                    tid, reply.data, reply.format, reply.metadata, backing, call.options,
                    self.host_reply_caps(call.peer), self.secret, self.replies, self.reply_pool,
                    payload.data,
                )
            except errors.BadReply as e:
                raise errors.HandlerFailed(tid, "bad-reply", str(e)) from None
        finally:
            for unused in payload._buffers:
                unused.close()
            payload._buffers.clear()

    def _send_inline(self, requests: Iterator, context, guard: CallGuard):
        timer = _Timer()
        call = _Call(context)
        guard.streaming = True
        first = _next(requests, guard)
        if first is None:
            raise errors.invalid_argument("an empty stream, expected a first chunk with a header")
        first = _checked(first)
        if not first.HasField("header"):
            raise errors.invalid_argument("the first chunk carries no header")
        header = first.header
        tid, total = header.transfer_id, header.total_len
        if total > self.config.max_inline_bytes:
            raise errors.resource_exhausted(
                f"transfer {tid}: an inline payload of {total} bytes, "
                f"expected at most {self.config.max_inline_bytes}"
            )
        if len(header.format.encode("utf-8")) > MAX_FORMAT_LEN:
            raise errors.invalid_argument(
                f"transfer {tid}: a format of {len(header.format.encode())} bytes, "
                f"expected at most {MAX_FORMAT_LEN}"
            )
        left = context.time_remaining()
        # No chunk is read while waiting for room: silence then is not the stream's.
        guard.streaming = False
        # Give up a little before the deadline, so that the host hears why.
        room = self.budget.reserve(total, None if left is None else max(0.0, left - 0.05))
        guard.room = room
        guard.progressed()
        guard.streaming = True
        try:
            try:
                buf = bytearray(total)
            except MemoryError:
                raise errors.resource_exhausted(
                    f"transfer {tid}: no memory for an inline payload of {total} bytes"
                ) from None
            view = memoryview(buf)
            hasher = xxhash.xxh3_64()
            got = 0
            later_header = f"transfer {tid}: a header after the first chunk"
            for chunk in _stream(first, requests, guard, "header", later_header):
                data = chunk.data
                if got + len(data) > total:
                    raise errors.invalid_argument(
                        f"transfer {tid}: chunks go past total_len {total}"
                    )
                view[got : got + len(data)] = data
                hasher.update(data)
                got += len(data)
                room.received = got
            guard.streaming = False
            guard.room = None
            if got != total:
                raise errors.invalid_argument(
                    f"transfer {tid}: the stream ended after {got} bytes, expected {total}"
                )
            data = view.toreadonly()
            try:
                reply = self._handle(self._payload(tid, header.format, data, "inline", call), call)
            finally:
                _release(data)
                _release(view)
            return self._ack(timer, guard, tid, total, hasher.intdigest(), reply)
        finally:
            room.release()

    @contextlib.contextmanager
    def _mapped(self, reference):
        """Checks and maps `reference`; yields its fields and a read-only view of its payload,
        released afterwards."""
        fields = check_reference(
            reference, self.secret, self.peer_pid, self.config.max_segment_bytes
        )
        mapping = self.mappings.get(fields)
        try:
            whole = memoryview(mapping.mm)
            data = whole[fields.offset : fields.offset + fields.length]
            try:
                yield fields, mapping, data
            finally:
                _release(data)
                _release(whole)
        finally:
            self.mappings.done(mapping)

    def _ack(self, timer: "_Timer", guard: CallGuard, tid: int, length: int, digest: int,
             reply: Optional[transfer_pb2.Reply]) -> transfer_pb2.TransferAck:
        """The ack; when the watchdog ended the call meanwhile, the reply it would have carried
        is freed instead, as the host never hears of it."""
        if guard.ended is not None:
            if reply is not None and reply.WhichOneof("body") in ("segment", "deferred"):
                self.replies.release(tid)
            guard.check()
        return timer.ack(tid, length, digest, reply)

    def _send_reference(self, request, context, guard: CallGuard):
        timer = _Timer()
        call = _Call(context)
        request = _checked(request)
        verify = _verification(request)
        with self._mapped(request) as (fields, mapping, data):
            mapping.check_length(fields.transfer_id)
            verifier = Verifier(verify, fields.length)
            verifier.update(0, data)
            digest = verifier.intdigest()
            reply = self._handle(
                self._payload(fields.transfer_id, fields.format, data, "reference", call), call)
        return self._ack(timer, guard, fields.transfer_id, fields.length, digest, reply)

    def _send_reference_stream(self, requests: Iterator, context, guard: CallGuard):
        timer = _Timer()
        call = _Call(context)
        guard.streaming = True
        first = _next(requests, guard)
        first = None if first is None else _checked(first)
        if first is None or not first.HasField("reference"):
            raise errors.invalid_argument(
                "the stream's first message carries no reference, expected one"
            )
        verify = _verification(first.reference)
        with self._mapped(first.reference) as (fields, mapping, data):
            tid, length = fields.transfer_id, fields.length
            verifier = Verifier(verify, length)
            done = 0
            later_reference = f"transfer {tid}: a reference after the first message"
            for message in _stream(first, requests, guard, "reference", later_reference):
                ready = message.ready
                if ready == done:
                    continue  # a repeated announcement: nothing new
                if ready < done or ready > length:
                    raise errors.out_of_range(
                        f"transfer {tid}: progress to {ready} after {done}, "
                        f"expected {done} to {length}"
                    )
                mapping.check_length(tid)
                verifier.update(done, data[done:ready])
                done = ready
            guard.streaming = False
            if done != length:
                raise errors.invalid_argument(
                    f"transfer {tid}: the stream ended with {done} of {length} bytes ready"
                )
            reply = self._handle(self._payload(tid, fields.format, data, "reference", call), call)
        return self._ack(timer, guard, tid, length, verifier.intdigest(), reply)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        ack = transfer_pb2.TransferAck.SerializeToString
        caps = transfer_pb2.Capabilities
        return grpc.method_handlers_generic_handler(
            TRANSFER_SERVICE,
            {
                "Negotiate": grpc.unary_unary_rpc_method_handler(
                    self.negotiate, _deserializer(caps), caps.SerializeToString
                ),
                "SendInline": grpc.stream_unary_rpc_method_handler(
                    self.send_inline, _deserializer(transfer_pb2.InlineChunk), ack
                ),
                "SendReference": grpc.unary_unary_rpc_method_handler(
                    self.send_reference, _deserializer(transfer_pb2.SegmentReference), ack
                ),
                "SendReferenceStream": grpc.stream_unary_rpc_method_handler(
                    self.send_reference_stream,
                    _deserializer(transfer_pb2.ReferenceProgress),
                    ack,
                ),
                "FetchReply": grpc.unary_stream_rpc_method_handler(
                    self.fetch_reply,
                    _deserializer(transfer_pb2.ReplyHandle),
                    transfer_pb2.ReplyChunk.SerializeToString,
                ),
                "ReleaseReply": grpc.unary_unary_rpc_method_handler(
                    self.release_reply,
                    _deserializer(transfer_pb2.ReplyHandle),
                    transfer_pb2.ReplyReleased.SerializeToString,
                ),
            },
        )


class HealthServicer:
    """`grpc.health.v1.Health`: the server is SERVING; the Transfer service is SERVING until
    the worker shuts down."""

    def __init__(self):
        self._cond = threading.Condition()
        self._transfer = SERVING

    def shut_down(self) -> None:
        with self._cond:
            self._transfer = NOT_SERVING
            self._cond.notify_all()

    def _status(self, service: str, context):
        if service == "":
            return SERVING
        if service == TRANSFER_SERVICE:
            return self._transfer
        context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")

    def check(self, request, context):
        with self._cond:
            status = self._status(request.service, context)
        return health_pb2.HealthCheckResponse(status=status)

    def watch(self, request, context):
        with self._cond:
            last = self._status(request.service, context)
        yield health_pb2.HealthCheckResponse(status=last)
        while context.is_active():
            with self._cond:
                self._cond.wait(0.5)
                now = self._status(request.service, context)
            if now != last:
                last = now
                yield health_pb2.HealthCheckResponse(status=now)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        req = health_pb2.HealthCheckRequest.FromString
        resp = health_pb2.HealthCheckResponse.SerializeToString
        return grpc.method_handlers_generic_handler(
            HEALTH_SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(self.check, req, resp),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch, req, resp),
            },
        )
