"""A worker whose first call hangs until the process is killed: the first call to reach any
process of it creates the marker file named by the caller's metadata `marker` and sleeps; every
later call (in a fresh process, after the host replaced the killed one) replies `served by <pid>`
at once."""

import os
import sys
import time

from perfopt_worker import Worker

worker = Worker()


@worker.handler
def handle(payload):
    marker = payload.metadata["marker"]
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return f"served by {os.getpid()}".encode()
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(600)
    return b"never"


if __name__ == "__main__":
    sys.exit(worker.main())
