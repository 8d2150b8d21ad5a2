"""The refusals a worker answers with: a gRPC status code and a message for the host."""

from __future__ import annotations

import functools

import grpc


class Refused(Exception):
    """A transfer the worker refuses or cannot complete, with the status the host receives."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple = ()):
        super().__init__(message)
        self.code = code
        self.message = message
        #: Trailing metadata sent with the status, as (key, value) pairs.
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"Refused({self.code.name}, {self.message!r})"


class BadReply(TypeError):
    """A handler's return value that cannot be a reply; its transfer fails with `bad-reply`."""


class HandlerFailed(Refused):
    """The handler raised or returned no reply: `UNKNOWN`, with the failure's `kind` (the
    exception's type name, or `bad-reply`) in the trailing metadata `perfopt-handler-error`."""

    def __init__(self, transfer_id: int, kind: str, message: str):
        super().__init__(
            grpc.StatusCode.UNKNOWN,
            f"the handler failed on transfer {transfer_id}: {kind}: {message}",
            ((HANDLER_ERROR_KEY, kind),),
        )
        self.kind = kind


HANDLER_ERROR_KEY = "perfopt-handler-error"

# One constructor per status the protocol names, e.g. `invalid_argument("what came")`.
invalid_argument = functools.partial(Refused, grpc.StatusCode.INVALID_ARGUMENT)
unauthenticated = functools.partial(Refused, grpc.StatusCode.UNAUTHENTICATED)
out_of_range = functools.partial(Refused, grpc.StatusCode.OUT_OF_RANGE)
permission_denied = functools.partial(Refused, grpc.StatusCode.PERMISSION_DENIED)
not_found = functools.partial(Refused, grpc.StatusCode.NOT_FOUND)
failed_precondition = functools.partial(Refused, grpc.StatusCode.FAILED_PRECONDITION)
resource_exhausted = functools.partial(Refused, grpc.StatusCode.RESOURCE_EXHAUSTED)
