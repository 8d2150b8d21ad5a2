"""`python -m perfopt_worker.demo`: a worker that sums each payload as a numpy array, read in
place (dtype and shape from the `perfopt-dtype` and `perfopt-shape` metadata, bytes otherwise),
and prints the sum on standard error."""

import sys

import numpy as np

from .handler import Payload
from .worker import Worker

worker = Worker()


@worker.handler
def total(payload: Payload) -> np.ndarray:
    arr = payload.array()
    result = arr.sum(dtype=np.float64 if arr.dtype.kind == "f" else np.uint64)
    print(f"transfer {payload.transfer_id}: {payload.method}, {len(payload)} bytes, "
          f"sum {result}", file=sys.stderr)
    return np.asarray(result)


if __name__ == "__main__":
    sys.exit(worker.main())
