"""`python -m perfopt_worker` and `python -m perfopt_worker.demo` start as a Rust host's
WorkerCommand starts a worker, stop when their host is gone, and the demo's replies reach a
host in another process (its reply segments mapped through /proc/<worker pid>/fd)."""

import os
import pathlib
import stat
import subprocess
import sys

import grpc
import numpy as np
import pytest

from perfopt_worker import SecretError, checksum, read_secret
from support import (
    Client,
    MappedReply,
    MemfdSegment,
    asking,
    fetch,
    inline_chunks,
    negotiate,
    reference,
    release,
)


def write_secret(path, data: bytes, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)


def spawn(module, tmp_path, peer_pid, secret_file=None):
    args = [sys.executable, "-m", module, "--listen", f"unix:{tmp_path / 'w.sock'}",
            "--peer-pid", str(peer_pid)]
    if secret_file:
        args += ["--secret-file", str(secret_file)]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PERFOPT_DEMO_LOG": "1"},
    )
    line = proc.stdout.readline()
    assert line.startswith("listening unix:"), (line, proc.stderr.read() if proc.poll() else "")
    return proc, line.split(" ", 1)[1].strip()


def test_the_checksum_worker_follows_the_spawn_contract(tmp_path, secret):
    write_secret(tmp_path / "secret", secret)
    host = subprocess.Popen(["sleep", "60"])
    proc, endpoint = spawn("perfopt_worker", tmp_path, host.pid, tmp_path / "secret")
    try:
        assert endpoint == f"unix:{tmp_path / 'w.sock'}"
        assert stat.S_IMODE(os.stat(tmp_path / "w.sock").st_mode) == 0o600
        client = Client(endpoint)
        payload = os.urandom(5000)
        ack = client.transfer.SendInline(inline_chunks(payload))
        assert ack.checksum == checksum(payload)
        client.close()
        # The host is gone: the worker ends by itself.
        host.kill()
        host.wait()
        assert proc.wait(timeout=60) == 0
    finally:
        host.kill()
        proc.kill()
        proc.wait()


def test_the_demo_replies_with_the_sum_of_a_numpy_payload_read_in_place(tmp_path, secret):
    write_secret(tmp_path / "secret", secret)
    proc, endpoint = spawn("perfopt_worker.demo", tmp_path, os.getpid(), tmp_path / "secret")
    values = np.arange(1000, dtype="<f8")
    seg = MemfdSegment(values.tobytes(), size=8192)
    try:
        client = Client(endpoint)
        assert list(negotiate(client).features) == ["reply"]
        ack = client.transfer.SendReference(
            reference(secret, seg, transfer_id=5, length=8000, fmt="numpy"),
            metadata=asking() + (("perfopt-dtype", "<f8"),))
        assert ack.checksum == checksum(values.tobytes())
        assert dict(ack.reply.metadata) == {"perfopt-dtype": "<f8", "perfopt-shape": ""}
        assert np.frombuffer(ack.reply.inline, "<f8").tolist() == [499500.0]
        client.close()
    finally:
        seg.close()
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "transfer 5: reference, 8000 bytes, sum 499500.0" in err


def test_the_demo_scales_into_a_segment_the_host_maps_and_echoes_for_fetching(tmp_path, secret):
    write_secret(tmp_path / "secret", secret)
    proc, endpoint = spawn("perfopt_worker.demo", tmp_path, os.getpid(), tmp_path / "secret")
    values = np.arange(1 << 18, dtype="<i4").reshape(512, 512)
    array_md = (("perfopt-dtype", "<i4"), ("perfopt-shape", "512,512"))
    try:
        client = Client(endpoint)
        caps = negotiate(client)
        ack = client.transfer.SendInline(
            inline_chunks(values.tobytes(), transfer_id=1),
            metadata=asking(threshold=65_536, mode="scale", factor="3") + array_md)
        ref = ack.reply.segment
        assert ref.memfd.pid == proc.pid == caps.pid
        mapped = MappedReply(secret, ref, proc.pid)
        try:
            got = np.frombuffer(mapped.data, "<i4").reshape(512, 512)
            assert np.array_equal(got, values * 3)
            del got
        finally:
            mapped.close()
        release(client, 1)
        # Released, the segment is the worker's to reuse: the next reply is written to it.
        ack = client.transfer.SendInline(
            inline_chunks(values.tobytes(), transfer_id=4),
            metadata=asking(threshold=65_536, mode="scale", factor="5") + array_md)
        again = ack.reply.segment
        assert (again.memfd.fd, again.segment_inode) == (ref.memfd.fd, ref.segment_inode)
        mapped = MappedReply(secret, again, proc.pid)
        try:
            got = np.frombuffer(mapped.data, "<i4").reshape(512, 512)
            assert np.array_equal(got, values * 5)
            del got
        finally:
            mapped.close()
        release(client, 4)
        negotiate(client, zero_copy=False)
        ack = client.transfer.SendInline(inline_chunks(values.tobytes(), transfer_id=2),
                                         metadata=asking(mode="echo") + array_md)
        assert ack.reply.deferred and b"".join(fetch(client, 2)) == values.tobytes()
        with pytest.raises(grpc.RpcError) as e:
            client.transfer.SendInline(inline_chunks(b"x", transfer_id=3),
                                       metadata=asking(mode="square"))
        assert ("perfopt-handler-error", "ValueError") in tuple(e.value.trailing_metadata())
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "transfer 1: inline, 1048576 bytes, scaled by 3.0" in err
    assert "transfer 2: inline, 1048576 bytes, echoed" in err


def test_a_secret_file_others_may_read_is_refused(tmp_path):
    write_secret(tmp_path / "secret", b"k" * 32, mode=0o644)
    with pytest.raises(SecretError, match="mode 0644"):
        read_secret(str(tmp_path / "secret"))
    write_secret(tmp_path / "short", b"k" * 31)
    with pytest.raises(SecretError, match="expected 32"):
        read_secret(str(tmp_path / "short"))
    out = subprocess.run(
        [sys.executable, "-m", "perfopt_worker", "--listen", f"unix:{tmp_path / 'w.sock'}",
         "--secret-file", str(tmp_path / "secret")], capture_output=True, text=True)
    assert out.returncode == 2 and "mode 0644" in out.stderr and out.stdout == ""


def test_a_handler_may_print_after_the_host_closed_the_workers_stdout(tmp_path):
    script = tmp_path / "printing_worker.py"
    script.write_text(
        "from perfopt_worker import Worker\n"
        "worker = Worker()\n"
        "@worker.handler\n"
        "def handle(payload):\n"
        "    print('got', len(payload), 'bytes', flush=True)\n"
        "worker.main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), "--listen", f"unix:{tmp_path / 'w.sock'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().split(" ", 1)[1].strip()
        proc.stdout.close()
        client = Client(endpoint)
        assert client.transfer.SendInline(inline_chunks(b"z" * 77)).length == 77
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "got 77 bytes" in err


def test_the_readmes_worker_in_ten_lines_replies_with_its_payload_doubled(tmp_path):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## A worker in ten lines"):]
    script = tmp_path / "my_worker.py"
    script.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    proc = subprocess.Popen(
        [sys.executable, str(script), "--listen", f"unix:{tmp_path / 'w.sock'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().split(" ", 1)[1].strip()
        client = Client(endpoint)
        values = np.arange(10, dtype="<i8")
        ack = client.transfer.SendInline(inline_chunks(values.tobytes()),
                                         metadata=asking() + (("perfopt-dtype", "<i8"),))
        assert np.frombuffer(ack.reply.inline, "<i8").tolist() == (values * 2).tolist()
        client.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
