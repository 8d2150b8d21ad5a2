"""What a Python user would write instead of perfopt to hand an f32 array to another Python
process and get a reply: the baselines of `cargo bench -p perf-cli --bench python_roundtrip`.

    python bench/baseline.py --json OUT [--sizes 1024,1048576] [--repeats 30,30]

Three baselines, each with a server in its own process and modes `echo` (the array comes back)
and `sum` (its float64 sum, 8 bytes):

- `grpc`: a unary gRPC call over a Unix socket carrying the array's bytes (grpcio, message
  limits raised to 1 GiB; the client sends `array.tobytes()`); the server reads it with
  numpy and returns a copy or the sum.
- `shm`: `multiprocessing.shared_memory` with a pickled header over a `multiprocessing.Pipe`.
  The client writes the array into its SharedMemory block and sends the header; the server
  maps the block, sums it with numpy or copies it into its own SharedMemory block and replies
  with a header; the client maps the reply block and reads every byte (XXH3-64, as perfopt's
  host checks a reply). Blocks are made once per size and reused, as perfopt pools segments.
- `shm_xxh3`: the same, with the XXH3-64 passes perfopt's protocol makes besides that one:
  the server hashes the payload it read (perfopt's ack) and the reply it wrote (the reply's
  checksum), the client hashes the payload it sent and compares both. This is the
  like-for-like comparison: what the same round trip costs with perfopt's integrity checks.

Every round trip is timed on the client from before the payload is written (shm) or sent
(grpc) to the reply in hand, and checked after the clock stops. Sizes and modes are
interleaved; the first round of each size is a warm-up. The JSON holds every sample in
microseconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import sys
import tempfile
import time
from concurrent import futures
from multiprocessing import shared_memory

import grpc
import numpy as np
import xxhash

GIB = 1 << 30
MODES = ("echo", "sum")
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", GIB),
    ("grpc.max_receive_message_length", GIB),
]


def floats(n: int) -> np.ndarray:
    """0.0, 0.25, 0.5, ... wrapping at 1024, so that every sum is exact (as the bench's)."""
    return ((np.arange(n, dtype=np.int64) % 1024) * 0.25).astype("<f4")


# --- gRPC ----------------------------------------------------------------------------------


def grpc_server(address: str, ready) -> None:
    def echo(request: bytes, _context) -> bytes:
        return np.frombuffer(request, dtype="<f4").tobytes()

    def total(request: bytes, _context) -> bytes:
        return struct.pack("<d", float(np.frombuffer(request, dtype="<f4").sum(dtype=np.float64)))

    handler = grpc.method_handlers_generic_handler(
        "bench.Array",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Sum": grpc.unary_unary_rpc_method_handler(total),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    server.start()
    ready.send(True)
    server.wait_for_termination()


class GrpcClient:
    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.calls = {
            "echo": self.channel.unary_unary("/bench.Array/Echo"),
            "sum": self.channel.unary_unary("/bench.Array/Sum"),
        }

    def round_trip(self, mode: str, payload: np.ndarray):
        started = time.perf_counter()
        reply = self.calls[mode](payload.tobytes())
        took = time.perf_counter() - started
        return took, reply

    def close(self) -> None:
        self.channel.close()


# --- shared memory -------------------------------------------------------------------------


def shm_server(conn, hashed: bool) -> None:
    mapped: dict[str, shared_memory.SharedMemory] = {}
    replies: dict[int, shared_memory.SharedMemory] = {}
    try:
        while True:
            header = conn.recv()
            if header is None:
                break
            block = mapped.get(header["name"])
            if block is None:
                block = mapped[header["name"]] = shared_memory.SharedMemory(name=header["name"])
            arr = np.ndarray(header["shape"], dtype=header["dtype"], buffer=block.buf)
            read = xxhash.xxh3_64_intdigest(arr.data.cast("B")) if hashed else None
            if header["mode"] == "sum":
                conn.send({"sum": float(arr.sum(dtype=np.float64)), "read": read})
                del arr
                continue
            out_block = replies.get(arr.nbytes)
            if out_block is None:
                out_block = replies[arr.nbytes] = shared_memory.SharedMemory(
                    create=True, size=arr.nbytes
                )
            out = np.ndarray(arr.shape, dtype=arr.dtype, buffer=out_block.buf)
            np.copyto(out, arr)
            wrote = xxhash.xxh3_64_intdigest(out.data.cast("B")) if hashed else None
            conn.send({"name": out_block.name, "nbytes": arr.nbytes, "dtype": arr.dtype.str,
                       "shape": arr.shape, "read": read, "wrote": wrote})
            del arr, out
    finally:
        for block in mapped.values():
            block.close()
        for block in replies.values():
            block.close()
            block.unlink()


class ShmClient:
    def __init__(self, hashed: bool = False):
        self.hashed = hashed
        self.conn, theirs = mp.Pipe()
        self.server = mp.Process(target=shm_server, args=(theirs, hashed), daemon=True)
        self.server.start()
        self.blocks: dict[int, shared_memory.SharedMemory] = {}
        self.replies: dict[str, shared_memory.SharedMemory] = {}

    def round_trip(self, mode: str, payload: np.ndarray):
        block = self.blocks.get(payload.nbytes)
        if block is None:
            block = self.blocks[payload.nbytes] = shared_memory.SharedMemory(
                create=True, size=payload.nbytes
            )
        started = time.perf_counter()
        np.copyto(np.ndarray(payload.shape, dtype=payload.dtype, buffer=block.buf), payload)
        self.conn.send({"name": block.name, "mode": mode, "dtype": payload.dtype.str,
                        "shape": payload.shape})
        header = self.conn.recv()
        if self.hashed and header["read"] != xxhash.xxh3_64_intdigest(payload.data.cast("B")):
            raise SystemExit(f"shm_xxh3 {mode}: the server read other bytes")
        if mode == "sum":
            took = time.perf_counter() - started
            return took, header["sum"]
        reply = self.replies.get(header["name"])
        if reply is None:
            reply = self.replies[header["name"]] = shared_memory.SharedMemory(name=header["name"])
        view = reply.buf[: header["nbytes"]]
        digest = xxhash.xxh3_64_intdigest(view)
        if self.hashed and header["wrote"] != digest:
            raise SystemExit(f"shm_xxh3 {mode}: the reply differs from what the server wrote")
        took = time.perf_counter() - started
        got = np.frombuffer(view, dtype=header["dtype"]).copy()
        view.release()
        return took, (digest, got)

    def close(self) -> None:
        self.conn.send(None)
        self.server.join(timeout=30)
        for block in self.replies.values():
            block.close()
        for block in self.blocks.values():
            block.close()
            block.unlink()


# --- the run -------------------------------------------------------------------------------


def check(baseline: str, mode: str, payload: np.ndarray, expected_sum: float, reply) -> None:
    where = f"{baseline} {mode} of {payload.nbytes} bytes"
    if mode == "sum":
        got = struct.unpack("<d", reply)[0] if baseline == "grpc" else reply
        if got != expected_sum:
            raise SystemExit(f"{where}: sum {got}, expected {expected_sum}")
        return
    if baseline == "grpc":
        got = np.frombuffer(reply, dtype="<f4")
    else:  # shm and shm_xxh3
        digest, got = reply
        if digest != xxhash.xxh3_64_intdigest(payload.data.cast("B")):
            raise SystemExit(f"{where}: the reply's XXH3 differs from the payload's")
    if got.nbytes != payload.nbytes or not np.array_equal(got, payload):
        raise SystemExit(f"{where}: the reply differs from the payload ({got.nbytes} bytes)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="where to write the samples")
    p.add_argument("--sizes", default="1024,1048576,67108864,268435456",
                   help="payload sizes in bytes, comma-separated")
    p.add_argument("--repeats", default="30,30,7,3", help="timed round trips per size")
    p.add_argument("--warmups", type=int, default=1, help="untimed round trips per size")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = [int(r) for r in args.repeats.split(",")]
    if len(sizes) != len(repeats) or any(s % 4 for s in sizes):
        raise SystemExit("--sizes and --repeats need as many entries, sizes multiples of 4")

    socket_dir = tempfile.mkdtemp(prefix="perfopt-baseline-")
    address = f"unix:{os.path.join(socket_dir, 'grpc.sock')}"
    spawn = mp.get_context("spawn")
    mine, theirs = spawn.Pipe()
    grpc_process = spawn.Process(target=grpc_server, args=(address, theirs), daemon=True)
    grpc_process.start()
    if not mine.poll(30) or not mine.recv():
        raise SystemExit("the gRPC baseline server did not start")
    # The shared-memory server is forked before this process opens a gRPC channel; the two
    # share multiprocessing's resource tracker, which unlinks what either leaves behind.
    shm, shm_xxh3 = ShmClient(), ShmClient(hashed=True)
    clients = {"grpc": GrpcClient(address), "shm": shm, "shm_xxh3": shm_xxh3}

    rows = []
    largest = floats(max(sizes) // 4)
    for size, n in zip(sizes, repeats):
        payload = largest[: size // 4]
        expected_sum = float(payload.sum(dtype=np.float64))
        samples = {(b, m): [] for b in clients for m in MODES}
        for round_no in range(args.warmups + n):
            for (baseline, mode), taken in samples.items():
                took, reply = clients[baseline].round_trip(mode, payload)
                check(baseline, mode, payload, expected_sum, reply)
                del reply
                if round_no >= args.warmups:
                    taken.append(took * 1e6)
        for (baseline, mode), taken in samples.items():
            rows.append({"baseline": baseline, "mode": mode, "size": size,
                         "samples_us": taken})
        print(f"baseline: {size} bytes done", file=sys.stderr)

    for client in clients.values():
        client.close()
    grpc_process.terminate()
    grpc_process.join(timeout=10)
    with open(args.json, "w") as f:
        json.dump({"python": sys.version.split()[0], "grpcio": grpc.__version__,
                   "numpy": np.__version__, "rows": rows}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
