"""Payloads inline and by reference reach the handler whole and are acknowledged with their
checksum; the handler sees the mapped segment itself."""

import os
import threading
import time

import grpc
import numpy as np
import pytest

from perfopt_worker import Worker, WorkerConfig, checksum
from perfopt_worker._gen import transfer_pb2
from support import Client, MemfdSegment, NamedSegment, inline_chunks, reference


def test_negotiate_announces_version_1_and_zero_copy_only_with_a_secret(serve, secret):
    with_secret, _ = serve(secret=secret)
    caps = with_secret.transfer.Negotiate(transfer_pb2.Capabilities(protocol_version=1))
    assert (caps.protocol_version, caps.pid, caps.zero_copy) == (1, os.getpid(), True)
    assert caps.max_inline_bytes == 1 << 30 and caps.max_segment_bytes == 1 << 30
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert caps.host_id == f.read().strip()
    plain, _ = serve()
    caps = plain.transfer.Negotiate(transfer_pb2.Capabilities(protocol_version=1))
    assert (caps.zero_copy, caps.max_segment_bytes) == (False, 0)


@pytest.mark.parametrize("size,chunk", [(0, 1 << 20), (1, 1 << 20), (3 << 20, 1 << 20),
                                        (1000, 7), (5 << 20, 4 << 20)])
def test_inline_payloads_in_any_split_are_acknowledged_with_their_checksum(serve, size, chunk):
    seen = []
    worker = Worker()
    worker.handler(lambda p: seen.append((p.method, p.format, bytes(p.data))))
    client, _ = serve(worker)
    payload = os.urandom(size)
    ack = client.transfer.SendInline(inline_chunks(payload, transfer_id=9, chunk=chunk,
                                                   fmt="arrow"))
    assert (ack.transfer_id, ack.length, ack.checksum) == (9, size, checksum(payload))
    assert ack.worker_ns > 0
    assert seen == [("inline", "arrow", payload)]


def test_the_inline_payload_is_read_only(serve):
    errors = []

    def write(p):
        try:
            p.data[0] = 1
        except TypeError as e:
            errors.append(str(e))

    worker = Worker()
    worker.handler(write)
    client, _ = serve(worker)
    client.transfer.SendInline(inline_chunks(b"abc"))
    assert errors and "read-only" in errors[0]


@pytest.mark.parametrize("kind", [MemfdSegment, NamedSegment])
def test_a_reference_is_read_in_place_and_acknowledged(serve, secret, kind):
    payload = os.urandom(3000)
    seg = kind(b"\0" * 100 + payload, size=8192)
    views = []
    worker = Worker()
    worker.handler(lambda p: views.append((p.method, p.format, bytes(p.data), p.data.readonly)))
    client, _ = serve(worker, secret=secret)
    try:
        ack = client.transfer.SendReference(
            reference(secret, seg, transfer_id=3, offset=100, length=3000, fmt="numpy"))
        assert (ack.transfer_id, ack.length, ack.checksum) == (3, 3000, checksum(payload))
        assert views == [("reference", "numpy", payload, True)]
    finally:
        seg.close()


def test_the_numpy_view_shares_the_mapped_segment_and_a_pooled_segment_is_mapped_once(
        serve, secret):
    values = np.arange(1024, dtype="<f4")
    seg = MemfdSegment(values.tobytes(), size=8192)
    seen = []
    worker = Worker()

    @worker.handler
    def handle(p):
        arr = p.array()
        seen.append((arr.dtype, arr.shape, float(arr.sum()), arr.flags.writeable,
                     np.shares_memory(arr, np.frombuffer(p.data, dtype=np.uint8)),
                     arr.base is not None and not arr.flags.owndata))

    client, running = serve(worker, secret=secret)
    try:
        md = (("perfopt-dtype", "<f4"), ("perfopt-shape", "32,32"))
        for tid in (1, 2):
            client.transfer.SendReference(reference(secret, seg, transfer_id=tid,
                                                    length=4096), metadata=md)
        assert seen == [(np.dtype("<f4"), (32, 32), float(values.sum()), False, True, True)] * 2
        assert len(running.servicer.mappings) == 1
        # The segment's bytes change under the same mapping: the view is the segment itself.
        seg.write(np.ones(1024, dtype="<f4").tobytes())
        client.transfer.SendReference(reference(secret, seg, transfer_id=3, length=4096),
                                      metadata=md)
        assert seen[-1][2] == 1024.0
    finally:
        seg.close()


def test_a_released_segment_is_unmapped_by_the_sweep(serve, secret):
    seg = MemfdSegment(b"x" * 64)
    client, running = serve(secret=secret)
    client.transfer.SendReference(reference(secret, seg, length=64))
    assert len(running.servicer.mappings) == 1
    assert running.servicer.mappings.sweep() == 0
    seg.close()
    assert running.servicer.mappings.sweep() == 1
    assert len(running.servicer.mappings) == 0


def test_a_streamed_reference_is_read_as_announced(serve, secret):
    payload = os.urandom(10_000)
    seg = MemfdSegment(size=16384)
    seen = []
    worker = Worker()
    worker.handler(lambda p: seen.append(bytes(p.data)))
    client, _ = serve(worker, secret=secret)
    ref = reference(secret, seg, transfer_id=4, offset=16, length=10_000)

    def progress():
        yield transfer_pb2.ReferenceProgress(reference=ref, ready=0)
        for ready in (4000, 4000, 10_000):  # a repeated announcement is skipped
            seg.write(payload[:ready], 16)
            yield transfer_pb2.ReferenceProgress(ready=ready)

    try:
        ack = client.transfer.SendReferenceStream(progress())
        assert (ack.transfer_id, ack.length, ack.checksum) == (4, 10_000, checksum(payload))
        assert seen == [payload]
    finally:
        seg.close()


def test_a_named_segment_truncated_after_mapping_is_refused_not_faulted(serve, secret):
    seg = NamedSegment(b"y" * 64, size=8192)
    client, _ = serve(secret=secret)
    try:
        client.transfer.SendReference(reference(secret, seg, length=64))
        os.truncate(seg.path, 4096)
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendReference(reference(secret, seg, transfer_id=2, length=64))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "shrank to 4096 bytes" in e.value.details()
    finally:
        seg.close()


def test_an_inline_transfer_waits_for_room_and_is_refused_at_its_deadline(serve):
    worker = Worker(WorkerConfig(max_inline_bytes=1000, max_inflight_inline_bytes=1000))
    client, running = serve(worker)
    release = threading.Event()

    def holding():
        header = transfer_pb2.InlineHeader(transfer_id=1, total_len=1000)
        yield transfer_pb2.InlineChunk(header=header, data=b"a" * 10)
        release.wait(30)
        yield transfer_pb2.InlineChunk(data=b"a" * 990)

    first = client.transfer.SendInline.future(holding())
    for _ in range(1000):
        if running.servicer.budget.held == 1000:
            break
        time.sleep(0.01)
    assert running.servicer.budget.held == 1000
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"b" * 10, transfer_id=2), timeout=1)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert "no room for an inline payload of 10 bytes" in e.value.details()
    release.set()
    assert first.result(timeout=30).checksum == checksum(b"a" * 1000)
    assert client.transfer.SendInline(inline_chunks(b"c" * 10, transfer_id=3)).length == 10
    assert running.servicer.budget.held == 0


def test_a_worker_listens_on_tcp_with_the_port_the_system_picked():
    running = Worker().start("tcp:127.0.0.1:0")
    try:
        host, port = running.endpoint[len("tcp:"):].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        client = Client(running.endpoint)
        assert client.transfer.SendInline(inline_chunks(b"tcp")).checksum == checksum(b"tcp")
        client.close()
    finally:
        running.stop(grace=0)


def test_at_most_64_mappings_are_kept(serve, secret):
    client, running = serve(secret=secret)
    segs = [MemfdSegment(bytes([i]) * 64) for i in range(70)]
    try:
        for i, seg in enumerate(segs):
            ack = client.transfer.SendReference(reference(secret, seg, transfer_id=i, length=64))
            assert ack.checksum == checksum(bytes([i]) * 64)
        assert len(running.servicer.mappings) == 64
    finally:
        for seg in segs:
            seg.close()
