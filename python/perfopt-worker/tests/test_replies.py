"""The `reply` extension (docs/protocol.md, "Replies"), with the tests playing the host:
negotiation, inline replies, reply segments of the worker's mapped as a host maps them,
deferred replies fetched in chunks, release and expiry, and handler errors."""

import os
import time

import grpc
import numpy as np
import pytest

from perfopt_worker import Reply, Worker, WorkerConfig, checksum
from perfopt_worker._gen import transfer_pb2
from perfopt_worker.protocol import MAX_CHUNK_SIZE, MAX_REPLY_INLINE
from support import (
    MappedReply,
    MemfdSegment,
    asking,
    fetch,
    inline_chunks,
    negotiate,
    reference,
    release,
)

MiB = 1 << 20


def replying(replies: dict, config=None) -> Worker:
    """A worker whose handler returns `replies[transfer_id]`."""
    worker = Worker(config)
    worker.handler(lambda p: replies[p.transfer_id])
    return worker


def reply_segments() -> set:
    """The inodes of the worker's reply segments this process has descriptors of."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:perfopt-reply"):
                out.add(os.stat(f"/proc/self/fd/{fd}").st_ino)
        except OSError:
            pass
    return out


@pytest.mark.parametrize("host,answer", [
    (["reply"], ["reply"]),
    (["other", "reply", "reply"], ["reply"]),
    (["other"], []),
    ([], []),
])
def test_negotiate_answers_the_features_of_the_hosts_list_it_speaks(serve, host, answer):
    client, _ = serve()
    assert list(negotiate(client, features=host).features) == answer


def test_a_small_reply_comes_inline_with_its_checksum_format_and_metadata(serve):
    arr = np.arange(12, dtype="<f4").reshape(3, 4)
    replies = {1: b"hello", 2: arr, 3: Reply(b"\x01\x02", format="arrow",
                                             metadata={"rows": "2"}), 4: b"", 5: None}
    client, _ = serve(replying(replies))
    negotiate(client)
    acks = {tid: client.transfer.SendInline(inline_chunks(b"x", transfer_id=tid),
                                            metadata=asking())
            for tid in replies}
    r = acks[1].reply
    assert (r.WhichOneof("body"), r.inline, r.length, r.checksum, r.format) == (
        "inline", b"hello", 5, checksum(b"hello"), "raw")
    r = acks[2].reply
    assert (r.inline, r.format, dict(r.metadata)) == (
        arr.tobytes(), "numpy", {"perfopt-dtype": "<f4", "perfopt-shape": "3,4"})
    r = acks[3].reply
    assert (r.inline, r.format, dict(r.metadata)) == (b"\x01\x02", "arrow", {"rows": "2"})
    r = acks[4].reply
    assert (r.WhichOneof("body"), r.length, r.checksum) == ("inline", 0, checksum(b""))
    assert not acks[5].HasField("reply")
    assert acks[1].checksum == checksum(b"x")


def test_without_perfopt_reply_the_handler_runs_and_the_ack_is_version_1s(serve):
    wants = []
    worker = Worker()

    @worker.handler
    def handle(p):
        wants.append(p.wants_reply)
        return b"ignored"

    client, running = serve(worker)
    negotiate(client)
    ack = client.transfer.SendInline(inline_chunks(b"x"))
    assert not ack.HasField("reply") and ack.checksum == checksum(b"x")
    assert client.transfer.SendInline(inline_chunks(b"x"), metadata=asking()).reply.inline == (
        b"ignored")
    assert wants == [False, True] and len(running.servicer.replies) == 0


@pytest.mark.parametrize("inline_max,size,body", [
    (None, 65_536, "inline"),
    (None, 65_537, "deferred"),
    (100, 100, "inline"),
    (100, 101, "deferred"),
    (0, 0, "inline"),
    (8 * MiB, MAX_REPLY_INLINE, "inline"),
    (8 * MiB, MAX_REPLY_INLINE + 1, "deferred"),
])
def test_a_reply_is_inline_up_to_the_hosts_limit_capped_at_max_reply_inline(
        serve, inline_max, size, body):
    data = os.urandom(size)
    client, _ = serve(replying({1: data}))
    negotiate(client, zero_copy=False)
    reply = client.transfer.SendInline(inline_chunks(b"x"),
                                       metadata=asking(inline_max=inline_max)).reply
    assert (reply.WhichOneof("body"), reply.length, reply.checksum) == (
        body, size, checksum(data))
    got = reply.inline if body == "inline" else b"".join(fetch(client, 1))
    assert got == data


@pytest.mark.parametrize("key,value", [("perfopt-reply", "yes"),
                                       ("perfopt-reply-inline-max", "lots"),
                                       ("perfopt-reply-threshold", "-1")])
def test_malformed_reply_metadata_is_refused_before_the_handler_runs(serve, key, value):
    calls = []
    worker = Worker()
    worker.handler(calls.append)
    client, _ = serve(worker)
    md = (("perfopt-reply", "1"), (key, value))
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"x"), metadata=md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and key in e.value.details()
    assert calls == []


def test_a_large_reply_goes_in_a_sealed_signed_segment_of_the_workers_until_released(
        serve, secret):
    data = os.urandom(MiB)
    client, running = serve(replying({7: data}), secret=secret)
    caps = negotiate(client)
    before = time.time_ns() // 1_000_000
    ack = client.transfer.SendInline(inline_chunks(b"x", transfer_id=7),
                                     metadata=asking(threshold=65_536))
    reply = ack.reply
    assert reply.WhichOneof("body") == "segment"
    ref = reply.segment
    assert (ref.transfer_id, ref.length, ref.offset, ref.segment_len, ref.format) == (
        7, MiB, 0, MiB, "raw")
    assert before + 29_000 <= ref.expires_unix_ms <= time.time_ns() // 1_000_000 + 30_000
    mapped = MappedReply(secret, ref, caps.pid)
    try:
        assert bytes(mapped.data) == data
        assert checksum(mapped.data) == reply.checksum == checksum(data)
        pool = running.servicer.reply_pool
        assert mapped.worker_holds_it() and len(running.servicer.replies) == 1
        assert pool.free_segments() == 0
        release(client, 7)
        # Released, it goes back to the worker's pool of reply segments.
        assert len(running.servicer.replies) == 0 and pool.free_segments() == 1
        # The host's own mapping outlives the worker's descriptor.
        assert bytes(mapped.data) == data
        release(client, 7)  # releasing what the worker does not hold is answered all the same
    finally:
        mapped.close()


@pytest.mark.parametrize("why", ["not negotiated", "no reply feature", "no zero copy",
                                 "another host", "too small for the host", "under threshold",
                                 "worker without a secret"])
def test_a_large_reply_that_cannot_go_by_segment_is_deferred(serve, secret, why):
    data = os.urandom(200_000)
    client, _ = serve(replying({3: data}),
                      secret=None if why == "worker without a secret" else secret)
    if why != "not negotiated":
        negotiate(client,
                  features=[] if why == "no reply feature" else ["reply"],
                  zero_copy=why != "no zero copy",
                  host_id="another-boot-id" if why == "another host" else None,
                  max_segment_bytes=100_000 if why == "too small for the host" else 1 << 30)
    threshold = 300_000 if why == "under threshold" else 65_536
    reply = client.transfer.SendInline(inline_chunks(b"x", transfer_id=3),
                                       metadata=asking(threshold=threshold)).reply
    assert (reply.WhichOneof("body"), reply.deferred) == ("deferred", True)
    assert b"".join(fetch(client, 3)) == data


def test_a_deferred_reply_is_fetched_once_in_chunks_of_at_most_max_chunk_size(serve):
    data = os.urandom(9 * MiB)
    client, running = serve(replying({5: data}))
    reply = client.transfer.SendInline(inline_chunks(b"x", transfer_id=5),
                                       metadata=asking()).reply
    assert reply.deferred and reply.checksum == checksum(data)
    chunks = fetch(client, 5)
    assert [len(c) for c in chunks] == [MAX_CHUNK_SIZE, MAX_CHUNK_SIZE, MiB]
    assert b"".join(chunks) == data
    with pytest.raises(grpc.RpcError) as e:
        fetch(client, 5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(running.servicer.replies) == 0


def test_a_deferred_reply_of_the_payloads_own_bytes_outlives_the_payload(serve, secret):
    payload = os.urandom(100_000)
    seg = MemfdSegment(payload, size=100_000)
    worker = Worker()
    worker.handler(lambda p: p.data)
    client, _ = serve(worker, secret=secret)
    try:
        reply = client.transfer.SendReference(reference(secret, seg, transfer_id=2),
                                              metadata=asking()).reply
        assert reply.deferred
        seg.write(b"\0" * 100_000)  # after the ack the segment is the host's again
        assert b"".join(fetch(client, 2)) == payload
        reply = client.transfer.SendInline(inline_chunks(payload, transfer_id=3),
                                           metadata=asking()).reply
        assert b"".join(fetch(client, 3)) == payload
    finally:
        seg.close()


def test_an_unreleased_reply_is_freed_when_its_time_is_up(serve, secret):
    data = os.urandom(MiB)
    client, running = serve(replying({1: data, 2: data}), secret=secret)
    caps = negotiate(client)
    store = running.servicer.replies
    ref = client.transfer.SendInline(inline_chunks(b"x", transfer_id=1),
                                     metadata=asking(threshold=1)).reply.segment
    mapped = MappedReply(secret, ref, caps.pid)
    try:
        pool = running.servicer.reply_pool
        assert store.sweep(now=store.clock() + 29) == 0 and pool.free_segments() == 0
        assert store.sweep(now=store.clock() + 31) == 1 and pool.free_segments() == 1
    finally:
        mapped.close()
    negotiate(client, zero_copy=False)
    assert client.transfer.SendInline(inline_chunks(b"x", transfer_id=2),
                                      metadata=asking()).reply.deferred
    now = store.clock()
    store.clock = lambda: now + 31
    with pytest.raises(grpc.RpcError) as e:
        fetch(client, 2)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(store) == 0


def test_handler_errors_end_the_call_with_their_kind_and_the_worker_serves_the_next(serve):
    worker = Worker()

    @worker.handler
    def handle(p):
        view = p.array()  # a view of the payload, alive while the error travels
        p.reply_buffer(4096)
        if p.transfer_id == 1:
            raise ValueError(f"bad tensor shape {view.shape}")
        if p.transfer_id == 2:
            return {"sum": 3}
        return view[:2]

    client, running = serve(worker)
    segments = reply_segments()
    for tid, kind, message in [
        (1, "ValueError", "bad tensor shape (3,)"),
        (2, "bad-reply", "the handler returned dict, expected None, bytes, bytearray, "
                         "memoryview, a numpy array or a Reply of one of them"),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendInline(inline_chunks(b"abc", transfer_id=tid),
                                       metadata=asking())
        assert e.value.code() == grpc.StatusCode.UNKNOWN
        assert e.value.details() == f"the handler failed on transfer {tid}: {kind}: {message}"
        assert ("perfopt-handler-error", kind) in tuple(e.value.trailing_metadata())
    ack = client.transfer.SendInline(inline_chunks(b"abc", transfer_id=3), metadata=asking())
    assert (ack.transfer_id, ack.reply.inline) == (3, b"ab")
    # The reply buffers the handlers did not return go back to the pool: one segment served
    # all three calls.
    assert len(reply_segments() - segments) == running.servicer.reply_pool.free_segments() == 1
    assert len(running.servicer.replies) == 0


def test_a_reply_filled_in_part_of_a_reply_buffer_is_sent_from_that_buffer(serve, secret):
    inodes = []
    worker = Worker()

    @worker.handler
    def handle(p):
        out = p.reply_array((1024, 256), "<f4")
        out[:] = np.arange(256, dtype="<f4")
        inodes.append(p._buffers[0].inode)
        return out[256:]

    client, running = serve(worker, secret=secret)
    caps = negotiate(client)
    segments = reply_segments()
    ack = client.transfer.SendInline(inline_chunks(b"x"), metadata=asking(threshold=1))
    ref = ack.reply.segment
    assert (ref.segment_inode, ref.segment_len, ref.offset, ref.length) == (
        inodes[0], MiB, 256 * 1024, 768 * 1024)
    assert dict(ack.reply.metadata) == {"perfopt-dtype": "<f4", "perfopt-shape": "768,256"}
    mapped = MappedReply(secret, ref, caps.pid)
    try:
        got = np.frombuffer(mapped.data, "<f4").reshape(768, 256)
        assert (got == np.arange(256, dtype="<f4")).all()
        del got
        assert checksum(mapped.data) == ack.reply.checksum
    finally:
        mapped.close()
    release(client, 1)
    assert len(reply_segments() - segments) == running.servicer.reply_pool.free_segments() == 1
    running.servicer.reply_pool.close()
    assert reply_segments() == segments


def test_an_inline_reply_with_its_metadata_never_outgrows_an_ack(serve):
    data = os.urandom(MAX_REPLY_INLINE)
    replies = {1: Reply(data, metadata={"note": "n" * 10_000}),
               2: Reply(b"x", metadata={"note": "n" * (5 << 20)})}
    client, _ = serve(replying(replies))
    reply = client.transfer.SendInline(inline_chunks(b"x", transfer_id=1),
                                       metadata=asking(inline_max=MAX_REPLY_INLINE)).reply
    assert reply.deferred and reply.metadata["note"] == "n" * 10_000
    assert b"".join(fetch(client, 1)) == data
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"x", transfer_id=2), metadata=asking())
    assert ("perfopt-handler-error", "bad-reply") in tuple(e.value.trailing_metadata())
    assert "expected them to fit an ack of 4198400 bytes" in e.value.details()


def refused_for_held_replies(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert ("perfopt-reply-refused", "held-replies") in tuple(e.value.trailing_metadata())
    return e.value


def test_past_max_held_replies_a_reply_is_refused_until_one_is_released_or_expires(
        serve, secret):
    data = os.urandom(MiB)
    client, running = serve(replying({tid: data for tid in range(1, 8)},
                                     WorkerConfig(max_held_replies=2)), secret=secret)
    negotiate(client)
    store, pool = running.servicer.replies, running.servicer.reply_pool

    def call(tid, **ask):
        return client.transfer.SendInline(inline_chunks(b"x", transfer_id=tid),
                                          metadata=asking(**ask)).reply

    assert call(1, threshold=1).WhichOneof("body") == "segment"
    assert call(2).WhichOneof("body") == "segment"
    e = refused_for_held_replies(lambda: call(3, threshold=1))
    assert "holds 2 replies" in e.details() and "max_held_replies" in e.details()
    # A deferred reply counts as much as a segment; an inline one is never held.
    refused_for_held_replies(lambda: call(3, threshold=2 * MiB))
    assert call(4, inline_max=MAX_REPLY_INLINE).inline == data
    # The refused reply's segment went back to the pool; nothing more is held.
    assert (len(store), pool.free_segments()) == (2, 1)
    release(client, 1)
    assert call(5).WhichOneof("body") == "segment"
    # Past the limit, replies whose time is up are freed first.
    now = store.clock()
    store.clock = lambda: now + 31
    assert call(6).WhichOneof("body") == "segment"
    assert len(store) == 1


def test_past_max_held_bytes_a_reply_is_refused_and_a_smaller_one_still_fits(serve):
    replies = {1: os.urandom(200_000), 2: os.urandom(200_000), 3: os.urandom(100_000)}
    client, running = serve(replying(replies, WorkerConfig(max_held_bytes=300_000)))
    negotiate(client, zero_copy=False)

    def call(tid):
        return client.transfer.SendInline(inline_chunks(b"x", transfer_id=tid),
                                          metadata=asking()).reply

    assert call(1).deferred
    e = refused_for_held_replies(lambda: call(2))
    assert "a reply of 200000 bytes" in e.details() and "200000 bytes" in e.details()
    assert call(3).deferred and running.servicer.replies.held_bytes == 300_000
    assert b"".join(fetch(client, 1)) == replies[1]
    assert running.servicer.replies.held_bytes == 100_000
    assert call(2).deferred and b"".join(fetch(client, 2)) == replies[2]
