"""The handler API: metadata and arrays, failures that stay with their transfer, what a reply
may be."""

import fcntl
import os

import grpc
import numpy as np
import pytest

from perfopt_worker import BadReply, Payload, Reply, Worker, as_reply
from support import inline_chunks


def test_a_handler_that_raises_fails_its_transfer_and_the_worker_serves_the_next(serve):
    calls = []
    worker = Worker()

    @worker.handler
    def handle(p):
        calls.append(p.transfer_id)
        if p.transfer_id == 1:
            raise ValueError("bad tensor shape")

    client, _ = serve(worker)
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"abc", transfer_id=1))
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert e.value.details() == "the handler failed on transfer 1: ValueError: bad tensor shape"
    ack = client.transfer.SendInline(inline_chunks(b"abcd", transfer_id=2))
    assert (ack.transfer_id, ack.length) == (2, 4)
    assert calls == [1, 2]


def test_the_handler_sees_the_callers_metadata_without_its_prefix_and_nothing_else(serve):
    seen = []
    worker = Worker()
    worker.handler(lambda p: seen.append(dict(p.metadata)))
    client, _ = serve(worker)
    md = (("perfopt-meta-tenant", "a"), ("perfopt-meta-mode", "scale"), ("plain", "x"),
          ("perfopt-dtype", "<f4"), ("perfopt-shape", "3"), ("perfopt-reply", "1"))
    client.transfer.SendInline(inline_chunks(b"\0" * 12), metadata=md)
    assert seen == [{"tenant": "a", "mode": "scale", "perfopt-dtype": "<f4",
                     "perfopt-shape": "3"}]


def test_as_reply_gives_the_bytes_format_and_array_metadata_of_a_return_value():
    arr = np.arange(6, dtype="<i4").reshape(2, 3)
    r = as_reply(arr)
    assert (bytes(r.data), r.format) == (arr.tobytes(), "numpy")
    assert r.metadata == {"perfopt-dtype": "<i4", "perfopt-shape": "2,3"}
    # A C-contiguous array is its own bytes; another is made C-contiguous.
    assert np.shares_memory(np.frombuffer(r.data, np.uint8), arr)
    assert bytes(as_reply(arr.T).data) == np.ascontiguousarray(arr.T).tobytes()
    scalar = as_reply(np.float64(2.5))
    assert (bytes(scalar.data), scalar.metadata) == (
        np.float64(2.5).tobytes(), {"perfopt-dtype": "<f8", "perfopt-shape": ""})
    assert (bytes(as_reply(b"ab").data), as_reply(b"ab").format) == (b"ab", "raw")
    assert bytes(as_reply(memoryview(arr)).data) == arr.tobytes()
    assert bytes(as_reply(memoryview(b"abcdef")[::2]).data) == b"ace"
    r = as_reply(Reply(bytearray(b"xy"), format="arrow", metadata={"rows": "2"}))
    assert (bytes(r.data), r.format, r.metadata) == (b"xy", "arrow", {"rows": "2"})
    assert as_reply(None) is None


@pytest.mark.parametrize("value,says", [
    ({"sum": 3}, "returned dict, expected None, bytes, bytearray, memoryview, a numpy array"),
    (np.array([object()]), "holds Python objects"),
    (Reply(b"x", format="f" * 33), "format"),
    (Reply(b"x", metadata={"n": 3}), "is not text"),
    (Reply("text"), "returned str"),
])
def test_values_that_are_no_reply_are_refused(value, says):
    with pytest.raises(BadReply, match=says):
        as_reply(value)


def test_reply_array_is_a_writable_zeroed_array_over_a_sealed_memory_file():
    p = Payload(1, "raw", memoryview(b""), "inline")
    out = p.reply_array((4, 3), "<f4")
    assert (out.shape, out.dtype, out.flags.writeable, float(out.sum())) == (
        (4, 3), np.dtype("<f4"), True, 0.0)
    seg = p._buffers[0]
    assert seg.size == 48 and seg.offset_of(memoryview(out[1:]).cast("B")) == 12
    assert seg.offset_of(memoryview(np.zeros(3))) is None
    assert os.fstat(seg.fd).st_mode & 0o777 == 0o600
    seals = fcntl.fcntl(seg.fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW
    out[:] = 7
    assert os.pread(seg.fd, 4, 44) == np.float32(7).tobytes()
    assert len(p.reply_buffer(0)) == 0 and len(p._buffers) == 1
    seg.close()


def test_array_takes_dtype_and_shape_from_arguments_over_metadata():
    data = memoryview(np.arange(12, dtype="<u2").tobytes()).toreadonly()
    p = Payload(1, "numpy", data, "inline", {"perfopt-dtype": "<u2", "perfopt-shape": "3,4"})
    assert p.array().shape == (3, 4)
    with pytest.raises(ValueError):
        p.array("<u4")  # 6 elements do not fill the metadata's shape 3,4
    assert p.array("<u4", shape=(2, 3))[1, 2] == np.frombuffer(data, "<u4")[5]
    assert Payload(1, "raw", data, "inline").array().dtype == np.uint8
