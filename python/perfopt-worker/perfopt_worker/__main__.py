"""`python -m perfopt_worker`: the checksum worker, as `perfopt worker` is, started by a host's
WorkerCommand with the spawn contract's arguments."""

import sys

from .worker import Worker

if __name__ == "__main__":
    sys.exit(Worker().main())
