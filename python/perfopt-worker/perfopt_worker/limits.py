"""The bounds a worker keeps on its calls, as the Rust worker keeps them (docs/protocol.md,
"Transport"): how long a call may last, how long a stream may stay silent, and the room inline
payloads hold, which a transfer that stalled while others wait for room must give back.

A `Watchdog` thread looks at every call in progress ten times a second and ends the ones past a
bound with the status the protocol names: the host hears it at once, even while the call's own
thread still waits for the stream's next message or runs the handler.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Dict, Optional

import grpc

from . import errors

#: How often the watchdog looks at the calls in progress.
CHECK_EVERY_S = 0.1
#: The message of a call that outlived `max_call_duration` (what the Rust worker's HTTP/2
#: stack says, and what a Rust host recognises as a timeout).
TIMEOUT_EXPIRED = "Timeout expired"


def _seconds(s: float) -> str:
    return f"{s:g}s"


class CallGuard:
    """One call in progress: when it started, when its stream last sent a message, and the
    status it was ended with by the watchdog, if it was."""

    def __init__(self, context, started: float):
        self._context = context
        self.started = started
        self.last_message = started
        #: Whether the call waits for its stream's messages (silence counts against it).
        self.streaming = False
        #: The inline room it holds, if any (a stalled holder is preempted).
        self.room: Optional["Room"] = None
        self.ended: Optional[errors.Refused] = None
        self._lock = threading.Lock()

    def progressed(self) -> None:
        """Records a message of the call's stream."""
        self.last_message = time.monotonic()

    def end(self, refusal: errors.Refused) -> bool:
        """Ends the call with `refusal`'s status, once; False when it was ended already."""
        with self._lock:
            if self.ended is not None:
                return False
            self.ended = refusal
        if self.room is not None:
            self.room.release()
        _cancel(self._context, refusal)
        return True

    def check(self) -> None:
        """Raises the status the watchdog ended the call with, if it did."""
        if self.ended is not None:
            raise self.ended


def _cancel(context, refusal: errors.Refused) -> None:
    """Ends the RPC now with `refusal`'s code and message, from any thread.

    grpcio's `abort` works only on the call's own thread, which may be blocked reading the
    stream; its core cancels a call with a given status, which the host then receives.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(refusal.code.value[0], refusal.message)
    except Exception:  # another grpcio: end the call all the same, as CANCELLED
        context.cancel()


class InlineBudget:
    """Room for inline payloads being received, in bytes: a transfer reserves its whole
    payload before its chunks come, waiting its turn (first come, first served) within its
    deadline."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.closed = False
        self._cond = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._tickets = itertools.count()

    @property
    def waiting(self) -> int:
        """Transfers waiting for room now."""
        with self._cond:
            return len(self._queue)

    def reserve(self, n: int, timeout: Optional[float]) -> "Room":
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                while not self.closed and (self._queue[0] != ticket
                                           or self.held + n > self.limit):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise errors.resource_exhausted(
                            f"no room for an inline payload of {n} bytes: {self.held} of "
                            f"{self.limit} are held by other transfers"
                        )
                    self._cond.wait(left)
                if self.closed:
                    raise errors.Refused(grpc.StatusCode.UNAVAILABLE,
                                         "the worker is shutting down")
                self.held += n
                return Room(self, n)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def _give_back(self, n: int) -> None:
        with self._cond:
            self.held -= n
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Room:
    """Bytes of an `InlineBudget` held by one transfer; `release` gives them back, once."""

    def __init__(self, budget: InlineBudget, n: int):
        self._budget = budget
        self.n = n
        self.received = 0
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._budget._give_back(self.n)


class Watchdog:
    """Ends calls past their bounds: `max_call_duration_s` for any call (CANCELLED,
    `Timeout expired`), `stream_idle_timeout_s` without a message for a stream
    (DEADLINE_EXCEEDED), and `stall_timeout_s` without a chunk for an inline transfer holding
    room while another waits for room (ABORTED, and its room goes to the waiters)."""

    def __init__(self, budget: InlineBudget, max_call_duration_s: float,
                 stream_idle_timeout_s: float, stall_timeout_s: float):
        self.budget = budget
        self.max_call_duration_s = max_call_duration_s
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._lock = threading.Lock()
        self._calls: Dict[int, CallGuard] = {}
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perfopt-watchdog", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def watch(self, context) -> "_Watched":
        """Watches the call of `context` for as long as the returned context manager is
        entered."""
        return _Watched(self, CallGuard(context, time.monotonic()))

    def _add(self, guard: CallGuard) -> int:
        key = next(self._ids)
        with self._lock:
            self._calls[key] = guard
        return key

    def _remove(self, key: int) -> None:
        with self._lock:
            self._calls.pop(key, None)

    def check(self, now: Optional[float] = None) -> int:
        """Ends the calls past a bound now; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = list(self._calls.values())
        waiting = self.budget.waiting > 0
        ended = 0
        for guard in calls:
            refusal = self._verdict(guard, now, waiting)
            if refusal is not None and guard.end(refusal):
                ended += 1
        return ended

    def _verdict(self, guard: CallGuard, now: float,
                 waiting: bool) -> Optional[errors.Refused]:
        if now - guard.started > self.max_call_duration_s:
            return errors.Refused(grpc.StatusCode.CANCELLED, TIMEOUT_EXPIRED)
        if not guard.streaming:
            return None
        silent = now - guard.last_message
        if silent > self.stream_idle_timeout_s:
            return errors.Refused(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the stream sent nothing for {_seconds(self.stream_idle_timeout_s)} "
                "(stream_idle_timeout); expected the next message",
            )
        room = guard.room
        if room is not None and waiting and silent > self.stall_timeout_s:
            return errors.Refused(
                grpc.StatusCode.ABORTED,
                f"preempted: no chunk for {_seconds(self.stall_timeout_s)} (stall_timeout) "
                f"while other transfers waited for room; {room.received} of {room.n} bytes "
                "had arrived",
            )
        return None

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            self.check()

    def close(self) -> None:
        self._stop.set()


class _Watched:
    def __init__(self, watchdog: Watchdog, guard: CallGuard):
        self._watchdog = watchdog
        self.guard = guard
        self._key: Optional[int] = None

    def __enter__(self) -> CallGuard:
        self._key = self._watchdog._add(self.guard)
        return self.guard

    def __exit__(self, *exc) -> None:
        self._watchdog._remove(self._key)
