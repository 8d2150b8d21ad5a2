import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from perfopt_worker import Worker  # noqa: E402
from support import Client  # noqa: E402


@pytest.fixture
def secret() -> bytes:
    return os.urandom(32)


@pytest.fixture
def serve(tmp_path):
    """Starts `worker` (a Worker) on a socket in tmp_path; returns a Client; stops it after."""
    running = []

    def start(worker=None, secret=None, peer_pid=os.getpid()):
        worker = worker or Worker()
        path = tmp_path / f"w{len(running)}.sock"
        r = worker.start(f"unix:{path}", secret=secret, peer_pid=peer_pid)
        client = Client(r.endpoint)
        running.append((r, client))
        return client, r

    yield start
    for r, client in running:
        client.close()
        r.stop(grace=0)
