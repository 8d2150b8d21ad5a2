"""The refusals a worker answers with: a gRPC status code and a message for the host."""

from __future__ import annotations

import grpc


class Refused(Exception):
    """A transfer the worker refuses or cannot complete, with the status the host receives."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Refused({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


def unauthenticated(message: str) -> Refused:
    return Refused(grpc.StatusCode.UNAUTHENTICATED, message)


def out_of_range(message: str) -> Refused:
    return Refused(grpc.StatusCode.OUT_OF_RANGE, message)


def permission_denied(message: str) -> Refused:
    return Refused(grpc.StatusCode.PERMISSION_DENIED, message)


def not_found(message: str) -> Refused:
    return Refused(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> Refused:
    return Refused(grpc.StatusCode.FAILED_PRECONDITION, message)


def resource_exhausted(message: str) -> Refused:
    return Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
