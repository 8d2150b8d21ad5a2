"""The bounds the worker keeps on its calls, the Rust worker's (docs/protocol.md, "Transport"):
a stream silent for `stream_idle_timeout` ends with DEADLINE_EXCEEDED, an inline transfer that
stalls while holding room others wait for is preempted with ABORTED, any call ends at
`max_call_duration` with CANCELLED `Timeout expired`, and connections are bounded. Each ended
call gives back what it held, and the worker serves the next."""

import os
import threading
import time

import grpc
import pytest

from perfopt_worker import Worker, WorkerConfig, checksum
from perfopt_worker._gen import transfer_pb2, transfer_pb2_grpc
from support import MemfdSegment, inline_chunks, reference


def silent_after_first(total: int, stop: threading.Event, first: bytes = b"a" * 10,
                       transfer_id: int = 1):
    """An inline stream that sends its header and `first`, then nothing until `stop`."""
    header = transfer_pb2.InlineHeader(transfer_id=transfer_id, total_len=total)
    yield transfer_pb2.InlineChunk(header=header, data=first)
    stop.wait(30)


def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"waited {timeout} s for {what}"
        time.sleep(0.01)


def test_a_silent_inline_stream_ends_with_deadline_exceeded_and_gives_its_room_back(serve):
    client, running = serve(Worker(WorkerConfig(stream_idle_timeout_s=0.3,
                                                stall_timeout_s=0.3)))
    stop = threading.Event()
    started = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendInline(silent_after_first(1000, stop), timeout=20)
    finally:
        stop.set()
    took = time.monotonic() - started
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value.details()
    assert e.value.details() == ("the stream sent nothing for 0.3s (stream_idle_timeout); "
                                 "expected the next message")
    assert 0.3 <= took < 5, took
    wait_for(lambda: running.servicer.budget.held == 0, "the room to come back")
    assert client.transfer.SendInline(inline_chunks(b"next")).checksum == checksum(b"next")


def test_a_silent_reference_stream_ends_with_deadline_exceeded(serve, secret):
    client, running = serve(Worker(WorkerConfig(stream_idle_timeout_s=0.3,
                                                stall_timeout_s=0.3)), secret=secret)
    seg = MemfdSegment(b"x" * 4096)
    stop = threading.Event()

    def progress():
        yield transfer_pb2.ReferenceProgress(reference=reference(secret, seg, length=4096))
        yield transfer_pb2.ReferenceProgress(ready=1024)
        stop.wait(30)

    try:
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendReferenceStream(progress(), timeout=20)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value.details()
        assert "stream_idle_timeout" in e.value.details()
        wait_for(lambda: len(running.servicer.watchdog) == 0, "the call to end")
        ack = client.transfer.SendReference(reference(secret, seg, transfer_id=2, length=4096))
        assert ack.checksum == checksum(b"x" * 4096)
    finally:
        stop.set()
        seg.close()


def test_a_stream_that_keeps_sending_is_not_idle(serve):
    client, _ = serve(Worker(WorkerConfig(stream_idle_timeout_s=0.3, stall_timeout_s=0.3)))

    def slow():
        header = transfer_pb2.InlineHeader(transfer_id=1, total_len=6)
        yield transfer_pb2.InlineChunk(header=header)
        for _ in range(6):
            time.sleep(0.15)
            yield transfer_pb2.InlineChunk(data=b"s")

    assert client.transfer.SendInline(slow(), timeout=20).checksum == checksum(b"s" * 6)


def test_a_transfer_stalled_on_room_another_waits_for_is_preempted_with_aborted(serve):
    config = WorkerConfig(max_inline_bytes=1000, max_inflight_inline_bytes=1000,
                          stall_timeout_s=0.3, stream_idle_timeout_s=20)
    client, running = serve(Worker(config))
    stop = threading.Event()
    try:
        stalled = client.transfer.SendInline.future(silent_after_first(1000, stop), timeout=30)
        wait_for(lambda: running.servicer.budget.held == 1000, "the stalled transfer's room")
        # Nobody waits: a transfer silent for longer than stall_timeout keeps its room.
        time.sleep(0.6)
        assert running.servicer.budget.held == 1000 and not stalled.done()
        started = time.monotonic()
        ack = client.transfer.SendInline(inline_chunks(b"w" * 1000, transfer_id=2), timeout=20)
        assert ack.checksum == checksum(b"w" * 1000)
        assert time.monotonic() - started < 5
        with pytest.raises(grpc.RpcError) as e:
            stalled.result(timeout=10)
    finally:
        stop.set()
    assert e.value.code() == grpc.StatusCode.ABORTED, e.value.details()
    assert e.value.details() == (
        "preempted: no chunk for 0.3s (stall_timeout) while other transfers waited for "
        "room; 10 of 1000 bytes had arrived")
    wait_for(lambda: running.servicer.budget.held == 0, "the room to come back")


def test_a_transfer_that_keeps_sending_is_not_preempted(serve):
    config = WorkerConfig(max_inline_bytes=1000, max_inflight_inline_bytes=1000,
                          stall_timeout_s=0.3, stream_idle_timeout_s=20)
    client, running = serve(Worker(config))

    def steady():
        header = transfer_pb2.InlineHeader(transfer_id=1, total_len=1000)
        yield transfer_pb2.InlineChunk(header=header)
        for _ in range(10):
            time.sleep(0.1)
            yield transfer_pb2.InlineChunk(data=b"s" * 100)

    first = client.transfer.SendInline.future(steady(), timeout=30)
    wait_for(lambda: running.servicer.budget.held == 1000, "the first transfer's room")
    second = client.transfer.SendInline(inline_chunks(b"w" * 10, transfer_id=2), timeout=20)
    assert first.result(timeout=10).checksum == checksum(b"s" * 1000)
    assert second.checksum == checksum(b"w" * 10)


def test_a_call_past_max_call_duration_ends_with_cancelled_timeout_expired(serve, secret):
    release = threading.Event()
    worker = Worker(WorkerConfig(max_call_duration_s=0.5))
    worker.handler(lambda p: release.wait(10) if p.transfer_id == 1 else None)
    client, running = serve(worker, secret=secret)
    seg = MemfdSegment(b"y" * 64)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendReference(reference(secret, seg, length=64), timeout=20)
        took = time.monotonic() - started
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.CANCELLED, "Timeout expired")
        # The handler still runs (Python cannot stop it) but the host heard at once.
        assert 0.5 <= took < 5, took
        release.set()
        wait_for(lambda: len(running.servicer.watchdog) == 0, "the call to end")
        ack = client.transfer.SendReference(reference(secret, seg, transfer_id=2, length=64))
        assert ack.checksum == checksum(b"y" * 64)
    finally:
        release.set()
        seg.close()


def test_a_stream_trickling_past_max_call_duration_is_ended_too(serve):
    client, running = serve(Worker(WorkerConfig(max_call_duration_s=0.5,
                                                stream_idle_timeout_s=0.3,
                                                stall_timeout_s=0.3)))

    def trickle():
        header = transfer_pb2.InlineHeader(transfer_id=1, total_len=100)
        yield transfer_pb2.InlineChunk(header=header)
        for _ in range(100):
            time.sleep(0.1)
            yield transfer_pb2.InlineChunk(data=b"t")

    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(trickle(), timeout=30)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.CANCELLED, "Timeout expired")
    wait_for(lambda: running.servicer.budget.held == 0, "the room to come back")


def test_a_reply_made_after_the_call_was_ended_is_not_held(serve, secret):
    release = threading.Event()
    worker = Worker(WorkerConfig(max_call_duration_s=0.3))

    @worker.handler
    def late(p):
        release.wait(10)
        return os.urandom(1 << 20)

    client, running = serve(worker, secret=secret)
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"x"),
                                   metadata=(("perfopt-reply", "1"),), timeout=20)
    assert e.value.code() == grpc.StatusCode.CANCELLED
    release.set()
    wait_for(lambda: len(running.servicer.watchdog) == 0, "the call to end")
    assert len(running.servicer.replies) == 0


@pytest.mark.parametrize("field,value", [
    ("max_call_duration_s", 0), ("max_call_duration_s", 86_401),
    ("stream_idle_timeout_s", 0.001), ("stall_timeout_s", 16),
    ("handshake_timeout_s", 0), ("max_connections", 0),
    ("max_held_replies", 0), ("max_held_bytes", 0),
])
def test_limits_out_of_bounds_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        WorkerConfig(**{field: value}).validate()


def test_connections_past_max_connections_are_refused(tmp_path):
    running = Worker(WorkerConfig(max_connections=2)).start(f"unix:{tmp_path}/w.sock")
    # Each channel with its own connection (grpcio shares them between channels otherwise).
    channels = [grpc.insecure_channel(running.endpoint,
                                      options=[("grpc.default_authority", "localhost"),
                                               ("grpc.use_local_subchannel_pool", 1)])
                for _ in range(3)]
    try:
        outcomes = []
        for channel in channels:
            try:
                ack = transfer_pb2_grpc.TransferStub(channel).SendInline(
                    inline_chunks(b"x"), timeout=20)
                outcomes.append(ack.length)
            except grpc.RpcError as e:
                outcomes.append(e.code())
        assert outcomes == [1, 1, grpc.StatusCode.UNAVAILABLE]
        channels[0].close()
        # A connection closed makes room for another.
        for _ in range(100):
            try:
                ack = transfer_pb2_grpc.TransferStub(channels[2]).SendInline(
                    inline_chunks(b"y"), timeout=20)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        assert ack.checksum == checksum(b"y")
    finally:
        for channel in channels:
            channel.close()
        running.stop(grace=0)
