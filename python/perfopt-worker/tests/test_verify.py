"""The `verify` extension: a reference says how much of its payload the worker hashes (all of
it, the sample, or nothing), negotiated so that a host that does not name it gets the full
checksum; the sample is the one the Rust side computes (perf-transport/tests/data/samples.txt)."""

import os
import pathlib

import grpc
import pytest

from perfopt_worker import Worker, checksum
from perfopt_worker._gen import transfer_pb2
from perfopt_worker.protocol import (
    VERIFY_CHECKSUM,
    VERIFY_NONE,
    VERIFY_SAMPLED,
    Verifier,
    digest,
    sample_ranges,
)
from support import MemfdSegment, negotiate, reference

TABLE = pathlib.Path(__file__).resolve().parents[3] / "perf-transport" / "tests" / "data" / \
    "samples.txt"
MIB = 1 << 20


def table():
    for line in TABLE.read_text().splitlines():
        if line and not line.startswith("#"):
            length, ranges, sampled = line.split()
            yield int(length), ranges, int(sampled, 16)


def pattern(length: int) -> bytes:
    return bytes((31 * i + 7) % 256 for i in range(length))


@pytest.mark.parametrize("length,ranges,sampled", list(table()))
def test_the_sample_and_its_digest_are_the_shared_tables(length, ranges, sampled):
    shown = ",".join(f"{a}-{b}" for a, b in sample_ranges(length)) or "-"
    assert shown == ranges
    assert digest(pattern(length), VERIFY_SAMPLED) == sampled


def test_parts_in_any_split_give_the_digest_of_the_whole():
    data = os.urandom(3 * MIB + 12_345)
    for verify in (VERIFY_CHECKSUM, VERIFY_SAMPLED, VERIFY_NONE):
        for part in (1000, 4096, MIB, 2 * MIB + 1):
            v = Verifier(verify, len(data))
            for at in range(0, len(data), part):
                v.update(at, data[at:at + part])
            assert v.intdigest() == digest(data, verify), (verify, part)
    assert digest(data, VERIFY_NONE) == 0
    assert digest(data, VERIFY_CHECKSUM) == checksum(data)


def test_a_corrupted_byte_is_caught_inside_the_sample_and_not_outside():
    data = bytearray(os.urandom(3 * MIB + 777))
    before = digest(data, VERIFY_SAMPLED)
    for at, caught in [(0, True), (4095, True), (MIB + 10, True), (len(data) - 1, True),
                       (4096, False), (MIB - 1, False), (2 * MIB + 5000, False)]:
        data[at] ^= 0x40
        assert (digest(data, VERIFY_SAMPLED) != before) == caught, at
        data[at] ^= 0x40


def test_verify_is_answered_only_to_a_host_that_names_it_by_a_worker_that_maps(serve, secret):
    mapping, _ = serve(secret=secret)
    assert list(negotiate(mapping, features=("reply", "verify")).features) == ["reply", "verify"]
    assert list(negotiate(mapping, features=("reply",)).features) == ["reply"]
    inline_only, _ = serve()
    assert list(negotiate(inline_only, features=("reply", "verify")).features) == ["reply"]


@pytest.mark.parametrize("verify", [VERIFY_CHECKSUM, VERIFY_SAMPLED, VERIFY_NONE])
def test_a_reference_is_acknowledged_with_the_digest_it_asks_for(serve, secret, verify):
    payload = os.urandom(2 * MIB + 999)
    seg = MemfdSegment(b"\0" * 64 + payload, size=3 * MIB)
    seen = []
    worker = Worker()
    worker.handler(lambda p: seen.append(len(p.data)))
    client, _ = serve(worker, secret=secret)
    try:
        ref = reference(secret, seg, transfer_id=5, offset=64, length=len(payload),
                        verify=verify)
        ack = client.transfer.SendReference(ref)
        assert (ack.transfer_id, ack.length) == (5, len(payload))
        assert ack.checksum == digest(payload, verify)
        # The worker's code gets the whole payload whatever is verified.
        assert seen == [len(payload)]
    finally:
        seg.close()


@pytest.mark.parametrize("verify", [VERIFY_SAMPLED, VERIFY_NONE])
def test_a_streamed_reference_reads_only_what_it_asks_for(serve, secret, verify):
    payload = os.urandom(5 * MIB)
    seg = MemfdSegment(size=5 * MIB)
    client, _ = serve(secret=secret)
    ref = reference(secret, seg, transfer_id=6, length=len(payload), verify=verify)

    def progress():
        yield transfer_pb2.ReferenceProgress(reference=ref, ready=0)
        for ready in (MIB + 100, 3 * MIB, 5 * MIB):
            seg.write(payload[:ready])
            yield transfer_pb2.ReferenceProgress(ready=ready)

    try:
        ack = client.transfer.SendReferenceStream(progress())
        assert ack.checksum == digest(payload, verify)
    finally:
        seg.close()


def test_a_sampled_read_misses_a_byte_outside_the_sample_and_catches_one_inside(serve, secret):
    payload = bytearray(os.urandom(2 * MIB))
    seg = MemfdSegment(bytes(payload), size=2 * MIB)
    client, _ = serve(secret=secret)
    sent = digest(payload, VERIFY_SAMPLED)
    try:
        for at, caught in [(MIB // 2, False), (MIB + 1, True)]:
            seg.write(bytes([payload[at] ^ 1]), at)
            ack = client.transfer.SendReference(
                reference(secret, seg, length=len(payload), verify=VERIFY_SAMPLED))
            assert (ack.checksum != sent) == caught, at
            seg.write(bytes([payload[at]]), at)
    finally:
        seg.close()


def test_an_unknown_verification_is_refused(serve, secret):
    seg = MemfdSegment(b"x" * 64)
    client, _ = serve(secret=secret)
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendReference(reference(secret, seg, length=64, verify=9))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "verification 9" in e.value.details()
    finally:
        seg.close()
