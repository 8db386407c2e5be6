"""The gRPC front-end against a real Triton, driven by tritonclient's own gRPC client and raw stubs."""

import json
import queue
import time
from collections import Counter

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.gateway.ab_routes import AB_ROUTES as ROUTES
from tests.gateway.ab_routes import MULTIPLIER, X
from tritium.gateway.grpc_service import VARIANT_PARAMETER


@pytest.fixture
def gw(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory(max_payload_bytes=64 * 1024, upstream_timeout_s=1.0)


def inputs(shape=(1, 4), dtype="FP32", data=X):
    x = grpcclient.InferInput("x", list(shape), dtype)
    x.set_data_from_numpy(data)
    return [x]


def variant_of(result: grpcclient.InferResult) -> str:
    return result.get_response().parameters[VARIANT_PARAMETER].string_param


def test_split_and_variant_matches_answer(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    seen = Counter()
    for _ in range(60):
        result = client.infer("echo", inputs())
        variant = variant_of(result)
        np.testing.assert_array_equal(result.as_numpy("y"), X * MULTIPLIER[variant])
        seen[variant] += 1
    assert set(seen) == {"stable", "canary"}
    client.close()


def test_sticky_key_in_metadata(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    for user in ("alice", "bob", "carol", "dave"):
        variants = {variant_of(client.infer("echo", inputs(), headers={"x-user-id": user})) for _ in range(6)}
        assert len(variants) == 1
    client.close()


def test_variant_in_trailing_metadata_of_raw_stub(gw):
    with grpc.insecure_channel(gw.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="echo", model_version="2")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        del tensor
        request.raw_input_contents.append(X.tobytes())
        response, call = stub.ModelInfer.with_call(request)
        assert dict(call.trailing_metadata())["x-tritium-variant"] == "canary"
        np.testing.assert_array_equal(
            np.frombuffer(response.raw_output_contents[0], np.float32), X.ravel() * 2
        )


def test_health_metadata_config_and_public_name(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "triton"
    metadata = client.get_model_metadata("digits")
    assert metadata.name == "digits" and metadata.inputs[0].name == "x"
    assert client.get_model_config("digits").config.name == "digits"
    assert client.is_model_ready("echo", "4")
    assert list(client.get_model_metadata("echo").versions) == ["1", "2", "3", "4"]
    assert client.get_inference_statistics("echo").model_stats
    np.testing.assert_array_equal(client.infer("digits", inputs()).as_numpy("y"), X * 2)
    np.testing.assert_array_equal(client.infer("echo", inputs(), model_version="4").as_numpy("y"), X * 4)
    client.close()


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_errors_have_proper_status(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    err = _error(lambda: client.infer("echo", inputs((1, 3), data=np.ones((1, 3), np.float32))))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "unexpected shape" in err.message()
    err = _error(lambda: client.infer("nope", inputs()))
    assert err.status() == "StatusCode.NOT_FOUND" and "unknown model" in err.message()
    err = _error(lambda: client.infer("echo", inputs(), model_version="9"))
    assert err.status() == "StatusCode.NOT_FOUND"
    err = _error(lambda: client.infer("echo", inputs(), model_version="3"))
    assert err.status() == "StatusCode.INTERNAL" and "broken on purpose" in err.message()
    err = _error(lambda: client.infer("echo", inputs(), model_version="4", parameters={"delay_ms": 1500}))
    assert err.status() == "StatusCode.DEADLINE_EXCEEDED"
    big = np.ones((8, 4), np.float32)
    ok = client.infer("echo", inputs((8, 4), data=big))
    assert ok.as_numpy("y").shape == (8, 4)
    client.close()


def test_request_triton_rejects_stays_invalid_argument_and_is_counted_as_400(gw):
    request = service_pb2.ModelInferRequest(model_name="echo", model_version="1")
    request.inputs.add(name="x", datatype="INT32", shape=[1, 4])  # the model takes FP32
    request.raw_input_contents.append(b"\0" * 16)
    labels = {
        "model": "echo", "version": "1", "variant": "stable", "protocol": "grpc", "status": "400",
        "outcome": "client_error",
    }  # fmt: skip
    before = REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) or 0
    with grpc.insecure_channel(gw.grpc_url) as channel, pytest.raises(grpc.RpcError) as info:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "expects 'FP32'" in info.value.details()
    # the status reaches the client before the servicer's accounting runs: allow it a moment
    deadline = time.monotonic() + 2.0
    while REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) != before + 1:
        assert time.monotonic() < deadline, "the rejected request was not counted with status 400"
        time.sleep(0.01)


def test_payload_over_limit_is_resource_exhausted(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    big = np.ones((1, 20_000), np.float32)  # 80 KB > 64 KiB
    err = _error(lambda: client.infer("echo", inputs(big.shape, data=big)))
    assert err.status() == "StatusCode.RESOURCE_EXHAUSTED"
    client.close()


def test_stream_infer_is_routed(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for version in ("1", "2", "canary"):
        client.async_stream_infer("echo", inputs(), model_version=version)
    got = sorted(float(answers.get(timeout=10)[0].as_numpy("y")[0, 0]) for _ in range(3))
    client.stop_stream()
    client.close()
    assert got == [1.0, 2.0, 2.0]


def test_repository_control_needs_admin_token(gw):
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    err = _error(lambda: client.get_model_repository_index())
    assert err.status() == "StatusCode.UNAUTHENTICATED"
    err = _error(lambda: client.get_model_repository_index(headers={"authorization": "Bearer wrong"}))
    assert err.status() == "StatusCode.PERMISSION_DENIED"
    index = client.get_model_repository_index(headers={"authorization": "Bearer test-admin-token"})
    assert "echo" in {m.name for m in index.models}
    client.close()


def test_api_keys_on_grpc(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(api_keys=["k1"])
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    assert _error(lambda: client.infer("echo", inputs())).status() == "StatusCode.UNAUTHENTICATED"
    assert _error(lambda: client.infer("echo", inputs(), headers={"x-api-key": "k2"})).status() == (
        "StatusCode.PERMISSION_DENIED"
    )
    assert client.infer("echo", inputs(), headers={"x-api-key": "k1"}).as_numpy("y").shape == (1, 4)
    assert client.is_server_ready()
    client.close()


SHADOWED = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
                {"alias": "canary", "model": "echo", "version": "3", "weight": 0},  # v3 always fails
                {"alias": "slow", "model": "echo", "version": "4", "weight": 0},  # v4 +100 ms
            ],
            "shadow": {"alias": "slowshadow", "model": "echo", "version": "4", "fraction": 1.0},
        },
        "broken": {
            "targets": [{"alias": "stable", "model": "echo", "version": "3", "weight": 100}],
            "shadow": {"alias": "mirror", "model": "echo", "version": "1", "fraction": 1.0},
        },
    }
}


@pytest.fixture
def shadowed(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(SHADOWED))
    return gateway_factory()


def _shadow_count(model: str, target: str, outcome: str) -> float:
    labels = {"model": model, "target": target, "outcome": outcome}
    return REGISTRY.get_sample_value("tritium_gateway_shadow_requests_total", labels) or 0


def _wait_for(condition, budget_s: float = 10.0) -> None:
    deadline = time.monotonic() + budget_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_stream_records_each_answer_with_its_real_outcome_and_latency(shadowed):
    windows = shadowed.gateway.windows
    failed = {
        "model": "echo", "version": "3", "variant": "canary", "protocol": "grpc", "status": "502",
        "outcome": "upstream_error",
    }  # fmt: skip
    failed_before = REGISTRY.get_sample_value("tritium_gateway_requests_total", failed) or 0
    client = grpcclient.InferenceServerClient(shadowed.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    sent = [("stable", "a"), ("canary", "b"), ("stable", "c"), ("canary", ""), ("slow", "e")]
    for version, request_id in sent:
        client.async_stream_infer("echo", inputs(), model_version=version, request_id=request_id)
    got = [answers.get(timeout=10) for _ in sent]
    client.stop_stream()
    client.close()

    ok = {r.get_response().id: r for r, e in got if e is None}
    errors = [e for r, e in got if e is not None]
    assert set(ok) == {"a", "c", "e"}  # the client's own ids come back
    assert ok["e"].get_response().parameters[VARIANT_PARAMETER].string_param == "slow"
    np.testing.assert_array_equal(ok["e"].as_numpy("y"), X * 4)
    assert len(errors) == 2 and all("broken on purpose" in e.message() for e in errors)
    assert all("[request id:" not in e.message() or "[request id: b]" in e.message() for e in errors)

    since = 0.0
    stable = windows.summary("echo", "stable", since=since)
    canary = windows.summary("echo", "canary", since=since)
    slow = windows.summary("echo", "slow", since=since)
    assert (stable.requests, stable.errors) == (2, 0)
    assert (canary.requests, canary.errors) == (2, 2)  # not fake successes
    assert slow.requests == 1 and slow.p99_s is not None and slow.p99_s >= 0.1  # the real latency
    assert REGISTRY.get_sample_value("tritium_gateway_requests_total", failed) == failed_before + 2


def test_grpc_shadow_mirrors_after_the_answer_and_never_slows_it(shadowed):
    before = _shadow_count("echo", "slowshadow", "ok")
    client = grpcclient.InferenceServerClient(shadowed.grpc_url)
    client.infer("echo", inputs())  # warm up
    latencies = []
    for _ in range(10):
        started = time.perf_counter()
        result = client.infer("echo", inputs())
        latencies.append(time.perf_counter() - started)
        assert variant_of(result) == "stable"
        np.testing.assert_array_equal(result.as_numpy("y"), X)  # the primary's answer, not the shadow's
    client.close()
    assert float(np.median(latencies)) < 0.050  # the shadow version takes 100 ms per request
    _wait_for(lambda: _shadow_count("echo", "slowshadow", "ok") == before + 11)
    assert _shadow_count("echo", "slowshadow", "ok") == before + 11


def test_grpc_shadow_skips_requests_the_primary_failed(shadowed):
    before = _shadow_count("broken", "mirror", "ok") + _shadow_count("broken", "mirror", "error")
    client = grpcclient.InferenceServerClient(shadowed.grpc_url)
    for _ in range(3):
        assert _error(lambda: client.infer("broken", inputs())).status() == "StatusCode.INTERNAL"
    client.close()
    time.sleep(0.5)  # a mirror would have answered by now (version 1 is fast)
    after = _shadow_count("broken", "mirror", "ok") + _shadow_count("broken", "mirror", "error")
    assert after == before


def test_repository_load_and_unload_are_audited_with_the_actor(gateway_factory, own_triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(own_triton)
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    admin = {"authorization": "Bearer test-admin-token", "x-tritium-actor": "alice"}
    client.unload_model("echo", headers=admin)
    client.load_model("echo", headers=admin)
    assert _error(lambda: client.unload_model("echo")).status() == "StatusCode.UNAUTHENTICATED"
    client.close()
    expected = [("unload", "echo", "alice@127.0.0.1"), ("load", "echo", "alice@127.0.0.1")]
    assert [(r.action, r.model, r.who) for r in gw.gateway.store.history] == expected
    logged = [json.loads(line) for line in gw.gateway.store.audit_file.read_text().splitlines()]
    assert [(r["action"], r["model"], r["who"]) for r in logged] == expected
