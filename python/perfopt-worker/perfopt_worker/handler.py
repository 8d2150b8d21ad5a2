"""What a handler receives (`Payload`) and what it may return (`Reply`, or the bytes or array
itself; `as_reply` says which values are replies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import BadReply
from .protocol import MAX_FORMAT_LEN
from .replies import ReplySegment, SegmentPool

#: Metadata keys that describe a numpy payload or reply: a dtype string numpy accepts
#: (e.g. `<f4`, numpy's `dtype.str`) and a shape as comma-separated integers (e.g. `1024,3`).
DTYPE_KEY = "perfopt-dtype"
SHAPE_KEY = "perfopt-shape"

#: The bytes a reply may be made of (a numpy scalar counts as a 0-d array).
ReplyData = Union[bytes, bytearray, memoryview, np.ndarray, np.generic]


@dataclass
class Reply:
    """A handler's reply with a format and metadata of its own.

    A handler may return the bytes or array alone; wrapping them in `Reply` names the format
    (`numpy` for an array and `raw` otherwise by default) and adds metadata the host hands to
    its caller (for an array, `perfopt-dtype` and `perfopt-shape` are added unless given).
    """

    data: ReplyData
    format: Optional[str] = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _shape_text(shape: Sequence[int]) -> str:
    return ",".join(str(n) for n in shape)


def _byte_view(value: Any) -> memoryview:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise BadReply(f"the handler returned an array of dtype {value.dtype}, which holds "
                           "Python objects, expected an array of plain values")
        # A C-contiguous array is its own bytes; any other is copied into C order once.
        flat = np.ascontiguousarray(value).reshape(-1)
        return memoryview(flat.view(np.uint8))
    view = memoryview(value)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def as_reply(value: Any) -> Optional[Reply]:
    """The reply a handler's return value stands for, with `data` as a flat byte memoryview
    over the value's own memory (a C-contiguous array is not copied), its format and its
    metadata; None for None.

    Raises BadReply for a value that cannot be a reply: another type, an array of Python
    objects, a format over 32 bytes or metadata that is not text.
    """
    if value is None:
        return None
    reply = value if isinstance(value, Reply) else Reply(value)
    if isinstance(reply.data, np.generic):
        # A numpy scalar (what `arr.sum()` returns) is a 0-d array.
        reply = Reply(np.asarray(reply.data), reply.format, reply.metadata)
    if not isinstance(reply.data, (bytes, bytearray, memoryview, np.ndarray)):
        raise BadReply(
            f"the handler returned {type(reply.data).__name__}, expected None, bytes, "
            "bytearray, memoryview, a numpy array or a Reply of one of them"
        )
    metadata: Dict[str, str] = {}
    if isinstance(reply.data, np.ndarray):
        metadata = {DTYPE_KEY: reply.data.dtype.str, SHAPE_KEY: _shape_text(reply.data.shape)}
    for key, text in dict(reply.metadata).items():
        if not isinstance(key, str) or not isinstance(text, str):
            raise BadReply(f"the reply's metadata {key!r}: {text!r} is not text, expected "
                           "str keys and values")
        metadata[key] = text
    fmt = reply.format
    if fmt is None:
        fmt = "numpy" if isinstance(reply.data, np.ndarray) else "raw"
    if not isinstance(fmt, str) or len(fmt.encode("utf-8")) > MAX_FORMAT_LEN:
        raise BadReply(f"the reply's format {fmt!r} is not text of at most {MAX_FORMAT_LEN} "
                       "bytes")
    return Reply(_byte_view(reply.data), fmt, metadata)


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
    #: The caller's metadata (sent as `perfopt-meta-<key>`, seen here as `<key>`), and
    #: `perfopt-dtype` and `perfopt-shape` when the host described the payload as an array.
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Whether the host asked for the handler's reply; without it the return value is checked
    #: and dropped.
    wants_reply: bool = False
    _buffers: List[ReplySegment] = field(default_factory=list, repr=False, compare=False)
    _pool: Optional[SegmentPool] = field(default=None, repr=False, compare=False)

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

    def reply_buffer(self, nbytes: int, zeroed: bool = True) -> memoryview:
        """A writable buffer of `nbytes` in a shared-memory segment of the worker's, to fill
        and return (whole or a contiguous part of it) as the reply.

        A reply that goes by shared memory is then sent from this very segment, written once
        and never copied. Segments are reused from reply to reply once their host has released
        them, so the memory is already allocated and mapped; the buffer is zeroed unless
        `zeroed=False` (for a handler that writes every byte, like `np.copyto` or a ufunc's
        `out=`: it then holds whatever an earlier reply left). The buffer is valid only while
        the handler runs.
        """
        if nbytes < 0:
            raise ValueError(f"a reply buffer of {nbytes} bytes, expected 0 or more")
        if nbytes == 0:
            return memoryview(bytearray())
        try:
            segment = (self._pool.acquire(nbytes) if self._pool is not None
                       else ReplySegment(nbytes))
        except OSError:
            # No memory file can be had now: the reply is written to the heap and copied or
            # fetched from there.
            return memoryview(bytearray(nbytes))
        self._buffers.append(segment)
        if zeroed:
            segment.zero(nbytes)
        segment.zeroed = False
        return segment.view(nbytes)

    def reply_array(self, shape: Union[int, Sequence[int]], dtype: Any = "<f8",
                    zeroed: bool = True) -> np.ndarray:
        """A writable numpy array over `reply_buffer` (zeroed unless `zeroed=False`), to fill
        in place (e.g. with `np.multiply(x, 2, out=arr)`) and return as the reply."""
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return np.frombuffer(self.reply_buffer(nbytes, zeroed), dtype=dtype).reshape(shape)


Handler = Callable[[Payload], Union[None, ReplyData, Reply]]
