"""The health service answers as docs/protocol.md says."""

import grpc
import pytest

from perfopt_worker._gen import health_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(client, service):
    return client.health.Check(health_pb2.HealthCheckRequest(service=service)).status


def test_the_server_and_the_transfer_service_serve_and_others_are_not_found(serve):
    client, _ = serve()
    assert check(client, "") == SERVING
    assert check(client, "perfopt.transfer.v1.Transfer") == SERVING
    with pytest.raises(grpc.RpcError) as e:
        check(client, "other")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sees_the_transfer_service_stop_serving(serve):
    client, running = serve()
    stream = client.health.Watch(
        health_pb2.HealthCheckRequest(service="perfopt.transfer.v1.Transfer"))
    assert next(stream).status == SERVING
    running._health.shut_down()
    assert next(stream).status == NOT_SERVING
    assert check(client, "perfopt.transfer.v1.Transfer") == NOT_SERVING
    stream.cancel()
