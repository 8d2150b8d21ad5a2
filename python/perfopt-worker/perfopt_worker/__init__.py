"""A perfopt worker in Python: the worker side of perfopt's transfer protocol, version 1.

A host hands payloads to the worker inline over gRPC or by reference to shared memory; the
registered handler receives a read-only `memoryview` over them (the mapped segment itself for a
reference), and the worker acknowledges each with its XXH3-64 checksum::

    from perfopt_worker import Worker

    worker = Worker()

    @worker.handler
    def handle(payload):
        print(payload.array("<f8").sum())

    worker.main()
"""

from .errors import Refused
from .handler import DTYPE_KEY, SHAPE_KEY, Payload, Reply, as_reply
from .protocol import PROTOCOL_VERSION, checksum
from .service import WorkerConfig
from .worker import RunningWorker, SecretError, Worker, read_secret

__all__ = [
    "DTYPE_KEY",
    "PROTOCOL_VERSION",
    "Payload",
    "Refused",
    "Reply",
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
