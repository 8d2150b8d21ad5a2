"""The handler API: metadata and arrays, failures that stay with their transfer, replies."""

import grpc
import numpy as np
import pytest

from perfopt_worker import Payload, Worker, as_reply
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


def test_a_reply_that_is_no_bytes_fails_the_transfer_with_what_was_expected(serve):
    worker = Worker()
    worker.handler(lambda p: {"sum": 3})
    client, _ = serve(worker)
    with pytest.raises(grpc.RpcError) as e:
        client.transfer.SendInline(inline_chunks(b"abc"))
    assert e.value.code() == grpc.StatusCode.UNKNOWN
    assert "returned dict, expected None, bytes, bytearray, memoryview or a numpy array" in (
        e.value.details())


def test_the_handler_gets_the_callers_metadata(serve):
    seen = []
    worker = Worker()
    worker.handler(lambda p: seen.append(dict(p.metadata)))
    client, _ = serve(worker)
    client.transfer.SendInline(inline_chunks(b"abc"), metadata=(("tenant", "a"),))
    assert seen[0]["tenant"] == "a"


def test_replies_are_the_bytes_a_later_protocol_version_sends():
    arr = np.arange(6, dtype="<i4").reshape(2, 3)
    assert bytes(as_reply(arr)) == arr.tobytes()
    assert bytes(as_reply(arr.T)) == np.ascontiguousarray(arr.T).tobytes()
    assert bytes(as_reply(b"ab")) == b"ab"
    assert bytes(as_reply(memoryview(arr))) == arr.tobytes()
    assert as_reply(None) is None


def test_array_takes_dtype_and_shape_from_arguments_over_metadata():
    data = memoryview(np.arange(12, dtype="<u2").tobytes()).toreadonly()
    p = Payload(1, "numpy", data, "inline", {"perfopt-dtype": "<u2", "perfopt-shape": "3,4"})
    assert p.array().shape == (3, 4)
    with pytest.raises(ValueError):
        p.array("<u4")  # 6 elements do not fill the metadata's shape 3,4
    assert p.array("<u4", shape=(2, 3))[1, 2] == np.frombuffer(data, "<u4")[5]
    assert Payload(1, "raw", data, "inline").array().dtype == np.uint8
