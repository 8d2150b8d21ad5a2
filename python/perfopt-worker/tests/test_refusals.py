"""The shared refusal table (perf-transport/tests/data/refusals.txt), against this worker; the
Rust worker runs the same table in perf-transport/tests/refusals.rs."""

import os
import pathlib
import time

import grpc
import pytest

from perfopt_worker import Worker
from perfopt_worker._gen import transfer_pb2
from perfopt_worker.protocol import Memfd, ReferenceFields, sign
from support import MemfdSegment, NamedSegment, message, owner_tagged_name

TABLE = pathlib.Path(__file__).resolve().parents[3] / "perf-transport" / "tests" / "data" / \
    "refusals.txt"


def cases():
    out = []
    for line in TABLE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, call, code, *settings = line.split()
        out.append(pytest.param(call, code, dict(s.split("=", 1) for s in settings), id=name))
    return out


class Setup:
    """The segment and the reference a case describes."""

    def __init__(self, s: dict, secret: bytes, tmp: str):
        self.cleanup = []
        kind = s.get("segment", "memfd")
        mode = int(s["mode"], 8) if "mode" in s else None
        if kind == "memfd":
            if s.get("file") == "plain":
                path = os.path.join(tmp, "plain")
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.ftruncate(fd, 4096)
                seg_id, inode = Memfd(os.getpid(), fd), os.fstat(fd).st_ino
                self.cleanup.append(lambda: os.close(fd))
            else:
                seg = MemfdSegment()
                self.cleanup.append(seg.close)
                seg_id, inode = seg.segment, seg.inode
                if mode is not None:
                    os.fchmod(seg.fd, mode)
            if s.get("fd") == "-1":
                seg_id = Memfd(os.getpid(), -1)
            elif s.get("fd") == "closed":
                seg_id = Memfd(os.getpid(), 1_000_000)
        elif kind == "named":
            name = {"untagged": "/perfopt-test-untagged",
                    "other_owner": owner_tagged_name(1),
                    "long": "/" + "a" * 255}.get(s.get("name"), owner_tagged_name(os.getpid()))
            inode = 0
            file = s.get("file")
            if file == "symlink":
                target = NamedSegment()
                self.cleanup.append(target.close)
                link = os.path.join("/dev/shm", name[1:])
                os.symlink(target.path, link)
                self.cleanup.append(lambda: os.unlink(link))
                inode = target.inode
            elif file != "missing" and s.get("name") != "long":
                seg = NamedSegment(name=name)
                self.cleanup.append(seg.close)
                inode = seg.inode
                if mode is not None:
                    os.chmod(seg.path, mode)
            seg_id = name
        else:
            seg_id, inode = None, 0
        if s.get("inode") == "other":
            inode += 1
        fields = ReferenceFields(
            transfer_id=11, segment=seg_id, segment_inode=inode,
            segment_len=int(s.get("segment_len", 4096)), offset=int(s.get("offset", 0)),
            length=int(s.get("length", 64)),
            expires_unix_ms=time.time_ns() // 1_000_000 + int(s.get("expires", 30_000)),
            format="f" * int(s.get("format_len", 3)),
        )
        token = {
            "other_secret": lambda: sign(os.urandom(32), fields),
            "short": lambda: b"\x01" * 16,
        }.get(s.get("token"), lambda: sign(secret, fields) if seg_id is not None else b"\0" * 32)()
        if s.get("token") == "flipped":
            token = bytes([token[0] ^ 1]) + token[1:]
        self.reference = message(fields, token)
        if "verify" in s:
            self.reference.verify = int(s["verify"])

    def close(self):
        for f in reversed(self.cleanup):
            f()


def inline_messages(spec: str, format_len: int):
    for i, part in enumerate(spec.split(",")):
        if part.startswith("h"):
            total, n = (int(x) for x in part[1:].split(":"))
            header = transfer_pb2.InlineHeader(transfer_id=11, total_len=total,
                                               format="f" * format_len)
            yield transfer_pb2.InlineChunk(header=header, data=b"\x07" * n)
        else:
            yield transfer_pb2.InlineChunk(data=b"\x07" * int(part))


def progress_messages(spec: str, ref):
    for part in spec.split(","):
        if part.startswith("r"):
            yield transfer_pb2.ReferenceProgress(reference=ref, ready=int(part[1:]))
        else:
            yield transfer_pb2.ReferenceProgress(ready=int(part))


@pytest.mark.parametrize("call,code,settings", cases())
def test_the_python_worker_refuses_as_the_table_says(serve, secret, tmp_path, call, code,
                                                   settings):
    peer = {"other": 1, "none": None}.get(settings.get("peer"), os.getpid())
    worker_secret = None if settings.get("worker") == "no_secret" else secret
    client, _ = serve(Worker(), secret=worker_secret, peer_pid=peer)
    setup = Setup(settings, secret, str(tmp_path)) if call in ("reference", "progress") else None
    try:
        with pytest.raises(grpc.RpcError) as e:
            if call == "reference":
                client.transfer.SendReference(setup.reference)
            elif call == "progress":
                client.transfer.SendReferenceStream(
                    progress_messages(settings["progress"], setup.reference))
            elif call == "inline":
                client.transfer.SendInline(
                    inline_messages(settings["chunks"], int(settings.get("format_len", 3))))
            else:
                client.transfer.Negotiate(
                    transfer_pb2.Capabilities(protocol_version=int(settings["version"])))
    finally:
        if setup:
            setup.close()
    assert e.value.code() == getattr(grpc.StatusCode, code), e.value.details()
