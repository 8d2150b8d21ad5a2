"""A worker process: register a handler, serve on an endpoint, and the spawn contract a Rust
host starts workers by (`--listen`, `--peer-pid`, `--secret-file`, then `listening <endpoint>`)."""

from __future__ import annotations

import argparse
import os
import resource
import signal
import stat
import sys
import threading
from concurrent import futures
from typing import Optional, Sequence

import grpc

from .handler import Handler
from .protocol import MAX_REQUEST_MESSAGE, SECRET_LEN
from .service import HealthServicer, TransferServicer, WorkerConfig

# How often the worker looks whether its host still runs, and drops released mappings and
# expired replies.
PEER_CHECK_S = 0.5
SWEEP_EVERY_S = 1.0
# Messages over MAX_REQUEST_MESSAGE reach the service undecoded, to be refused with
# OUT_OF_RANGE; gRPC itself refuses those over this (RESOURCE_EXHAUSTED).
GRPC_RECEIVE_LIMIT = 16 * MAX_REQUEST_MESSAGE
# The most open files a worker raises its limit to.
OPEN_FILES = 65536


class SecretError(ValueError):
    """The secret file breaks its rules: exactly 32 bytes, readable by its owner only."""


def read_secret(path: str) -> bytes:
    """The per-host secret from `path`: exactly 32 raw bytes in a file only its owner may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise SecretError(f"{path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"{path} is not a regular file")
        if st.st_mode & 0o077:
            raise SecretError(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, expected no permission "
                "for group or others (0600)"
            )
        data = os.read(fd, SECRET_LEN + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_LEN:
        raise SecretError(f"{path} holds {len(data)} bytes or more, expected {SECRET_LEN}")
    return data


def grpc_address(listen: str) -> str:
    """The grpcio address of an endpoint `unix:PATH` or `tcp:HOST:PORT`."""
    if listen.startswith("unix:") and len(listen) > len("unix:"):
        return "unix:" + os.path.abspath(listen[len("unix:"):])
    if listen.startswith("tcp:"):
        host, sep, port = listen[len("tcp:"):].rpartition(":")
        if sep and host and port.isdigit():
            return f"{host}:{port}"
    raise ValueError(f"--listen {listen}: expected unix:PATH or tcp:HOST:PORT")


class RunningWorker:
    """A worker serving: where it listens, and how to stop it."""

    def __init__(self, server, endpoint: str, servicer: TransferServicer,
                 health: HealthServicer, peer_pid: Optional[int]):
        self.endpoint = endpoint
        self.servicer = servicer
        self._server = server
        self._health = health
        self._stop = threading.Event()
        self._stopped = threading.Event()
        threading.Thread(target=self._housekeeping, args=(peer_pid,), daemon=True).start()

    def _housekeeping(self, peer_pid: Optional[int]) -> None:
        swept = 0.0
        while not self._stop.wait(PEER_CHECK_S):
            if peer_pid is not None and not os.path.exists(f"/proc/{peer_pid}"):
                self.stop()
                return
            swept += PEER_CHECK_S
            if swept >= SWEEP_EVERY_S:
                swept = 0.0
                self.servicer.mappings.sweep()
                self.servicer.replies.sweep()
                self.servicer.reply_pool.sweep()

    def stop(self, grace: float = 2.0) -> None:
        """Stops taking calls (health says NOT_SERVING), lets running ones finish for `grace`
        seconds, unmaps every segment and frees the replies still held."""
        if self._stop.is_set():
            self._stopped.wait()
            return
        self._stop.set()
        self._health.shut_down()
        self.servicer.budget.close()
        self._server.stop(grace).wait()
        self.servicer.mappings.close()
        self.servicer.replies.close()
        self.servicer.reply_pool.close()
        self.servicer.watchdog.close()
        self._stopped.set()

    def wait(self) -> None:
        """Blocks until the worker has stopped."""
        self._stopped.wait()


class Worker:
    """A perfopt worker. Register one handler with `@worker.handler`; without one it only
    acknowledges each payload with its checksum, like `perfopt worker`."""

    def __init__(self, config: Optional[WorkerConfig] = None):
        self.config = config or WorkerConfig()
        self._handler: Optional[Handler] = None

    def handler(self, fn: Handler) -> Handler:
        """Decorator: `fn(payload)` runs for every transfer before it is acknowledged; what it
        returns is the reply, sent when the host asks for one."""
        self._handler = fn
        return fn

    def start(
        self,
        listen: str,
        secret: Optional[bytes] = None,
        peer_pid: Optional[int] = None,
    ) -> RunningWorker:
        """Serves on `listen` (`unix:PATH`, or `tcp:HOST:PORT` with port 0 for any) in
        background threads. References are taken only with a `secret`; with `peer_pid` their
        segments must belong to that process, and the worker stops once it is gone."""
        if secret is not None and len(secret) != SECRET_LEN:
            raise ValueError(f"a secret of {len(secret)} bytes, expected {SECRET_LEN}")
        address = grpc_address(listen)
        servicer = TransferServicer(self.config, self._handler, secret, peer_pid)
        health = HealthServicer()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.threads),
            handlers=[servicer.generic_handler(), health.generic_handler()],
            options=[
                ("grpc.max_receive_message_length", GRPC_RECEIVE_LIMIT),
                # An ack with an inline reply, or a ReplyChunk, is at most this long.
                ("grpc.max_send_message_length", MAX_REQUEST_MESSAGE),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.max_allowed_incoming_connections", self.config.max_connections),
                ("grpc.server_handshake_timeout_ms",
                 int(self.config.handshake_timeout_s * 1000)),
                ("grpc.so_reuseport", 0),
            ],
        )
        unix = address.startswith("unix:")
        # The socket file is made 0600: nobody else may connect, even for a moment.
        old = os.umask(0o177) if unix else None
        try:
            port = server.add_insecure_port(address)
            server.start()
        finally:
            if old is not None:
                os.umask(old)
        if unix:
            path = address[len("unix:"):]
            os.chmod(path, 0o600)
            endpoint = f"unix:{path}"
        else:
            host = address.rpartition(":")[0]
            endpoint = f"tcp:{host}:{port}"
        return RunningWorker(server, endpoint, servicer, health, peer_pid)

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        """Runs as the spawn contract says: reads `--listen`, `--peer-pid` and `--secret-file`,
        prints `listening <endpoint>`, and serves until the host is gone or a SIGTERM/SIGINT."""
        args = parse_args(argv)
        if args.max_inline is not None:
            self.config.max_inline_bytes = args.max_inline
            self.config.max_inflight_inline_bytes = max(
                self.config.max_inflight_inline_bytes, args.max_inline
            )
        if args.peer_pid is not None and not os.path.exists(f"/proc/{args.peer_pid}"):
            print(f"--peer-pid {args.peer_pid}: expected a live host process, found no process "
                  "with that pid", file=sys.stderr)
            return 2
        raise_open_file_limit()
        try:
            secret = read_secret(args.secret_file) if args.secret_file else None
            running = self.start(args.listen, secret, args.peer_pid)
        except (SecretError, ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=running.stop).start())
        print(f"listening {running.endpoint}", flush=True)
        # A host reads that one line and may close the pipe: whatever a handler prints from
        # now on goes to standard error, which the host passes on.
        os.dup2(2, 1)
        running.wait()
        return 0


def raise_open_file_limit() -> None:
    """Raises this process's limit of open files to its hard limit (at most 65536): each
    reply segment held for a host takes two descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass  # the limit stays; a reply that finds no descriptor is fetched instead


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The spawn contract's arguments, and `--max-inline BYTES`."""
    p = argparse.ArgumentParser(
        description="A perfopt worker (protocol version 1, with replies).")
    p.add_argument("--listen", required=True, help="unix:PATH or tcp:HOST:PORT")
    p.add_argument("--peer-pid", type=int, help="the host process")
    p.add_argument("--secret-file", help="the per-host secret (32 bytes, mode 0600)")
    p.add_argument("--max-inline", type=int, help="largest inline payload, in bytes")
    return p.parse_args(argv)
