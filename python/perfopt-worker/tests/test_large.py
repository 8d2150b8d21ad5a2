"""64 MiB arrays by shared memory both ways, with no copy in the worker: a payload summed where
the host wrote it, and a reply filled in place in the worker's own segment. "No copy" is
measured: the Python heap (tracemalloc, which numpy reports its buffers to) grows by far less
than the array during the call."""

import mmap
import os
import time
import tracemalloc

import numpy as np
import pytest

from perfopt_worker import Worker, checksum
from support import MappedReply, MemfdSegment, asking, negotiate, reference, release

SIZE = 64 << 20
N = SIZE // 4
# A copy of the array anywhere in the call would take SIZE bytes.
MOST_ALLOCATED = SIZE // 16


@pytest.fixture
def values():
    rng = np.random.default_rng(7)
    return rng.random(N, dtype=np.float32)


@pytest.fixture
def payload_segment(values):
    seg = MemfdSegment(size=SIZE)
    mm = mmap.mmap(seg.fd, SIZE)
    np.frombuffer(mm, np.float32)[:] = values
    del mm  # the segment keeps the bytes
    yield seg
    seg.close()


def peak_during(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def root(arr: np.ndarray):
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_a_64_mib_payload_is_summed_where_the_host_wrote_it(serve, secret, values,
                                                             payload_segment):
    seen = []
    worker = Worker()

    @worker.handler
    def total(p):
        arr = p.array()
        seen.append((arr.shape, arr.flags.owndata, type(root(arr))))
        return arr.sum(dtype=np.float64)

    client, _ = serve(worker, secret=secret)
    negotiate(client)
    md = asking() + (("perfopt-dtype", "<f4"), ("perfopt-shape", str(N)))
    ack, peak = peak_during(lambda: client.transfer.SendReference(
        reference(secret, payload_segment, transfer_id=1, fmt="numpy"), metadata=md))
    assert seen == [((N,), False, mmap.mmap)]
    assert peak < MOST_ALLOCATED, f"{peak} bytes allocated while summing {SIZE}"
    assert ack.length == SIZE and ack.checksum == checksum(values.tobytes())
    got = np.frombuffer(ack.reply.inline, "<f8")
    assert ack.reply.metadata["perfopt-dtype"] == "<f8"
    assert got[0] == pytest.approx(values.sum(dtype=np.float64), rel=1e-9)


def test_a_64_mib_reply_is_filled_in_place_and_sent_from_the_workers_segment(
        serve, secret, values, payload_segment):
    inodes = []
    worker = Worker()

    @worker.handler
    def scale(p):
        arr = p.array()
        out = p.reply_array(arr.shape, arr.dtype)
        np.multiply(arr, 2, out=out)
        inodes.append(p._buffers[0].inode)
        return out

    client, running = serve(worker, secret=secret)
    caps = negotiate(client)
    md = asking(threshold=1 << 20) + (("perfopt-dtype", "<f4"),)
    ack, peak = peak_during(lambda: client.transfer.SendReference(
        reference(secret, payload_segment, transfer_id=2, fmt="numpy"), metadata=md))
    assert peak < MOST_ALLOCATED, f"{peak} bytes allocated while scaling {SIZE}"
    reply = ack.reply
    ref = reply.segment
    # The reply is the very segment the handler filled, not a copy of it.
    assert (ref.segment_inode, ref.segment_len, ref.offset, ref.length) == (
        inodes[0], SIZE, 0, SIZE)
    assert dict(reply.metadata) == {"perfopt-dtype": "<f4", "perfopt-shape": str(N)}
    mapped = MappedReply(secret, ref, caps.pid)
    try:
        assert checksum(mapped.data) == reply.checksum
        assert np.array_equal(np.frombuffer(mapped.data, np.float32), values * 2)
    finally:
        mapped.close()
    release(client, 2)
    assert len(running.servicer.replies) == 0
    # Released, the segment waits in the worker's pool, and the next reply is written to it.
    pool = running.servicer.reply_pool
    assert pool.free_segments() == 1
    again = client.transfer.SendReference(
        reference(secret, payload_segment, transfer_id=3, fmt="numpy"), metadata=md).reply
    assert (again.segment.segment_inode, again.segment.memfd.fd) == (
        ref.segment_inode, ref.memfd.fd)
    assert again.checksum == reply.checksum and inodes == [inodes[0]] * 2
    release(client, 3)
    # Unused for a minute, it is closed.
    assert pool.sweep(now=time.monotonic() + 61) == 1 and pool.free_segments() == 0
    assert not os.path.exists(f"/proc/self/fd/{ref.memfd.fd}") or (
        os.stat(f"/proc/self/fd/{ref.memfd.fd}").st_ino != ref.segment_inode)
