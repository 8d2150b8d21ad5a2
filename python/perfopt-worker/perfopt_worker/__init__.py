"""A perfopt worker in Python: the worker side of perfopt's transfer protocol, version 1, with
its `reply` extension.

A host hands payloads to the worker inline over gRPC or by reference to shared memory; the
registered handler receives a read-only `memoryview` over them (the mapped segment itself for a
reference), and the worker acknowledges each with its XXH3-64 checksum and, when the host asks,
the handler's reply (inline, in a shared-memory segment of the worker's, or fetched later)::

    from perfopt_worker import Worker

    worker = Worker()

    @worker.handler
    def handle(payload):
        return payload.array("<f8").sum(keepdims=True)

    worker.main()
"""

from .errors import BadReply, Refused
from .handler import DTYPE_KEY, SHAPE_KEY, Payload, Reply, ReplyData, as_reply
from .protocol import PROTOCOL_VERSION, checksum
from .service import WorkerConfig
from .worker import RunningWorker, SecretError, Worker, read_secret

__all__ = [
    "BadReply",
    "DTYPE_KEY",
    "PROTOCOL_VERSION",
    "Payload",
    "Refused",
    "Reply",
    "ReplyData",
    "RunningWorker",
    "SHAPE_KEY",
    "SecretError",
    "Worker",
    "WorkerConfig",
    "as_reply",
    "checksum",
    "read_secret",
]
__version__ = "0.1.0"
