"""What a handler receives (`Payload`) and what it may return (`as_reply`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

#: Metadata keys a host may send to describe a numpy payload: a dtype string numpy accepts
#: (e.g. `<f4`) and a shape as comma-separated integers (e.g. `1024,3`).
DTYPE_KEY = "perfopt-dtype"
SHAPE_KEY = "perfopt-shape"

#: What a handler may return. Protocol version 1 only acknowledges a transfer with its checksum,
#: so the value is checked but not sent; replies travel back from
#: protocol version 2 on, with no change to handlers written now.
Reply = Union[None, bytes, bytearray, memoryview, np.ndarray]


@dataclass
class Payload:
    """One transfer as a handler sees it.

    `data` is a read-only `memoryview` over the payload: the mapped shared-memory segment
    itself for a reference (nothing is copied), or the reassembled bytes of an inline transfer.
    It is valid only while the handler runs; copy what must outlive the call.
    """

    transfer_id: int
    #: The payload's format name as the host sent it (`raw`, `numpy`, `arrow`, ...).
    format: str
    data: memoryview
    #: `inline` or `reference`.
    method: str
    #: The call's gRPC metadata (lowercase keys; the last value of a repeated key).
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.nbytes

    def array(
        self,
        dtype: Optional[Any] = None,
        shape: Optional[Sequence[int]] = None,
    ) -> np.ndarray:
        """A read-only numpy view of the payload, without a copy.

        `dtype` and `shape` default to the metadata's `perfopt-dtype` and `perfopt-shape`,
        then to `uint8` and one dimension.
        """
        if dtype is None:
            dtype = self.metadata.get(DTYPE_KEY, "uint8")
        if shape is None and SHAPE_KEY in self.metadata:
            shape = tuple(int(n) for n in self.metadata[SHAPE_KEY].split(",") if n.strip())
        arr = np.frombuffer(self.data, dtype=np.dtype(dtype))
        return arr if shape is None else arr.reshape(shape)


Handler = Callable[[Payload], Reply]


def as_reply(value: Any) -> Optional[memoryview]:
    """The bytes of a handler's return value, as a later protocol version will send them.

    Raises TypeError for a value that cannot be a reply.
    """
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return memoryview(np.ascontiguousarray(value)).cast("B")
    if isinstance(value, (bytes, bytearray, memoryview)):
        view = memoryview(value)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    raise TypeError(
        f"the handler returned {type(value).__name__}, expected None, bytes, bytearray, "
        "memoryview or a numpy array"
    )
