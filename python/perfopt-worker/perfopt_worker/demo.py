"""`python -m perfopt_worker.demo`: a worker that reads each payload as a numpy array in place
(dtype and shape from the `perfopt-dtype` and `perfopt-shape` metadata, bytes otherwise) and,
by the caller's metadata `mode` (sent as `perfopt-meta-mode`), replies with:

- `sum` (the default): the sum, a 0-d `<f8` array (`<u8` for integers);
- `echo`: the array itself, copied once into a reply buffer of the worker's;
- `scale`: the array times `factor` (`perfopt-meta-factor`, default 2), computed straight into
  a reply buffer, in the array's dtype.

A reply buffer is a shared-memory segment the host maps when the reply is large enough, so a
large reply is written once and never copied. With `PERFOPT_DEMO_LOG=1` in its environment it
logs each transfer on standard error.
"""

import os
import sys

import numpy as np

from .handler import Payload
from .worker import Worker

worker = Worker()

MODES = ("sum", "echo", "scale")
LOG = os.environ.get("PERFOPT_DEMO_LOG") == "1"


def log(line: str) -> None:
    if LOG:
        print(line, file=sys.stderr)


@worker.handler
def demo(payload: Payload) -> np.ndarray:
    arr = payload.array()
    mode = payload.metadata.get("mode", "sum")
    said = f"transfer {payload.transfer_id}: {payload.method}, {len(payload)} bytes"
    if mode == "sum":
        result = arr.sum(dtype=np.float64 if arr.dtype.kind in "fc" else np.uint64)
        log(f"{said}, sum {result}")
        return np.asarray(result)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}, expected one of {', '.join(MODES)}")
    # Every element is written below: the buffer need not be zeroed first.
    out = payload.reply_array(arr.shape, arr.dtype, zeroed=False)
    if mode == "echo":
        np.copyto(out, arr)
        log(f"{said}, echoed")
    else:
        factor = float(payload.metadata.get("factor", "2"))
        np.multiply(arr, factor, out=out, casting="unsafe")
        log(f"{said}, scaled by {factor}")
    return out


if __name__ == "__main__":
    sys.exit(worker.main())
