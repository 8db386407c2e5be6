"""A hostile client against the gateway and a real Triton: nothing it sends crashes Triton, grows
memory without bound, rolls back a canary, floods /metrics or runs code — each case of the
hardening issue, over REST and gRPC.

Cases that could crash Triton run against a Triton of this module's own (`hostile_triton`), so a
regression fails these tests and not the rest of the suite.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.gateway.conftest import ADMIN_TOKEN, TritonServer, free_port
from tests.gateway.running import wait_until_ready

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
X = [1.0, 2.0, 3.0, 4.0]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}
ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
                {"alias": "canary", "model": "echo", "version": "3", "weight": 0},  # version 3 always fails
            ]
        }
    }
}


@pytest.fixture(scope="module")
def hostile_triton(tmp_path_factory: pytest.TempPathFactory):
    server = TritonServer(tmp_path_factory.mktemp("hostile-triton"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gw(gateway_factory, hostile_triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory(hostile_triton)


def _memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _assert_triton_serves(gw) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{gw.url}/v2/models/echo/infer", json=BODY, timeout=30)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == X, answer.text
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([X], np.float32))
    np.testing.assert_array_equal(client.infer("echo", [x]).as_numpy("y"), [X])
    client.close()


def requests_total(**labels: str) -> float:
    return REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) or 0


def counted(expected: float, **labels: str) -> bool:
    """The answer reaches the client just before the gateway counts it: allow it a moment."""
    deadline = time.monotonic() + 2.0
    while requests_total(**labels) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- 1. one deeply nested JSON body took Triton down --------------------------------------------


def test_deeply_nested_json_is_refused_before_triton(gw, hostile_triton) -> None:
    deep = b"[" * 1_000_000 + b"]" * 1_000_000  # 2 MB
    in_inputs = b'{"inputs": ' + deep + b"}"  # as reported
    in_data = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ' + deep + b"}]}"
    for body, message in ((in_inputs, "Expected `object`, got `array`"), (in_data, "JSON nested too deep")):
        answer = httpx.post(f"{gw.url}/v2/models/echo/infer", content=body, timeout=30)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("invalid inference request: ") and message in answer.text
    # the same inside the JSON header of a binary-tensor request
    binary = httpx.post(
        f"{gw.url}/v2/models/echo/infer",
        content=in_data + b"\0" * 16,
        headers={
            "inference-header-content-length": str(len(in_data)),
            "content-type": "application/octet-stream",
        },
        timeout=30,
    )
    assert binary.status_code == 400 and "JSON nested too deep" in binary.json()["error"]
    assert hostile_triton.process is not None and hostile_triton.process.poll() is None
    _assert_triton_serves(gw)


# --- 2. compression bombs -------------------------------------------------------------------------


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def test_compressed_bodies_are_decoded_under_the_cap_and_never_reach_triton_compressed(
    gw, hostile_triton
) -> None:
    pid = hostile_triton.process.pid
    peak_before = _memory_kib(pid, "VmHWM")
    bomb = _gzip_of_zeros(1 << 30)  # 1 GiB of zeros in ~1 MiB
    assert len(bomb) < 2 << 20
    answer = httpx.post(
        f"{gw.url}/v2/models/echo/infer", content=bomb, headers={"content-encoding": "gzip"}, timeout=60
    )
    assert answer.status_code == 413
    assert answer.json()["error"].startswith("decoded request body exceeds the limit of 67108864 bytes")

    # a real compressed request (8 MiB decoded: JSON allows that much whitespace) is decoded and answered
    x = np.arange(32, dtype=np.float32).reshape(8, 4)
    tensor = {"name": "x", "datatype": "FP32", "shape": [8, 4], "data": x.ravel().tolist()}
    body = ('{"inputs": ' + " " * (8 << 20) + json.dumps([tensor]) + "}").encode()
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        assert len(data) < 100_000
        answer = httpx.post(
            f"{gw.url}/v2/models/echo/versions/2/infer",
            content=data,
            headers={"content-encoding": encoding},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(np.array(answer.json()["outputs"][0]["data"]).reshape(8, 4), x * 2)
    grown_mib = (_memory_kib(pid, "VmHWM") - peak_before) / 1024
    assert grown_mib <= 64, f"Triton's peak RSS grew by {grown_mib:.0f} MiB"
    _assert_triton_serves(gw)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
def test_other_content_encodings_are_415(gw, encoding: str) -> None:
    labels = {
        "model": "echo",
        "version": "",
        "variant": "",
        "protocol": "rest",
        "status": "415",
        "outcome": "client_error",
    }
    before = requests_total(**labels)
    answer = httpx.post(
        f"{gw.url}/v2/models/echo/infer", content=b"\x0b\x02\x80", headers={"content-encoding": encoding}
    )
    assert answer.status_code == 415 and "is not accepted" in answer.json()["error"]
    assert counted(before + 1, **labels)


# --- 3. a client could roll back a canary ---------------------------------------------------------


def _canary_state(gw) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    route = httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()
    return route["route"]["canary"]["state"], route["window"]["canary"]


def test_malformed_requests_cannot_roll_back_a_canary_real_failures_do(gw) -> None:
    policy = {"steps": [50, 100], "window_s": 60, "min_requests": 5, "max_error_rate_increase": 0.05}
    assert httpx.post(f"{gw.url}/admin/routes/echo/canary", json=policy, headers=AUTH).status_code == 200
    garbage = [
        ({"content-encoding": "br"}, b"\x0b\x02\x80"),  # was a 502
        ({}, b"{not json"),
        (
            {},
            json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
            ).encode(),
        ),
        ({"inference-header-content-length": b"\xb2"}, b"{}"),  # "²": was a 500
        ({}, b'{"inputs": ' + b"[" * 100 + b"]" * 100 + b"}"),
    ]
    statuses = set()
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for _ in range(10):
            for path in ("/v2/models/echo/versions/canary/infer", "/v2/models/echo/infer"):
                for headers, content in garbage:
                    statuses.add(http.post(path, content=content, headers=headers).status_code)
    channel = grpc.insecure_channel(gw.grpc_url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for _ in range(30):
        request = service_pb2.ModelInferRequest(model_name="echo", model_version="canary")
        request.inputs.add(name="x", datatype="FP32", shape=[2**62, 1, 8, 8])  # was INTERNAL
        request.raw_input_contents.append(b"\0" * 256)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    channel.close()
    assert statuses == {400, 415}, statuses
    time.sleep(1.0)  # ten controller ticks
    state, window = _canary_state(gw)
    assert state == "progressing" and window["errors"] == 0, window

    # the controller is awake: requests that really fail on the canary do roll it back
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for _ in range(10):
            assert http.post("/v2/models/echo/versions/canary/infer", json=BODY).status_code == 502
            http.post("/v2/models/echo/versions/stable/infer", json=BODY)
    deadline = time.monotonic() + 10
    while _canary_state(gw)[0] != "rolled_back":
        assert time.monotonic() < deadline, "the canary was not rolled back on real failures"
        time.sleep(0.1)


class GatewayProcess:
    """`tritium gateway` in a process of its own, so its memory can be measured."""

    def __init__(self, triton: TritonServer, tmp_path: Path, *, grpc: bool = False) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        self.url, self.grpc_url = f"http://127.0.0.1:{self.port}", f"127.0.0.1:{self.grpc_port}"
        routes = tmp_path / "routes.yaml"
        routes.write_text(yaml.safe_dump(ROUTES))
        ports = ["--grpc-port", str(self.grpc_port)] if grpc else ["--no-grpc"]
        command = [
            sys.executable, "-m", "tritium.cli", "gateway", "--port", str(self.port), *ports,
            "--routes", str(routes), "--triton-http", triton.http_url, "--triton-grpc", triton.grpc_url,
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until_ready(self.url, self.process)

    def rss_mib(self) -> float:
        return _memory_kib(self.process.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        return _memory_kib(self.process.pid, "VmHWM") / 1024

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output


# --- 4. unbounded metric labels ---------------------------------------------------------------------


def _gateway_series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("tritium_gateway_"))


def test_ten_thousand_junk_names_add_a_bounded_number_of_series(hostile_triton, tmp_path) -> None:
    gw = GatewayProcess(hostile_triton, tmp_path, grpc=True)  # a process of its own: the client needs the CPU
    try:
        _send_junk_names(gw)
    finally:
        output = gw.stop()
    assert "Traceback" not in output, output


def _send_junk_names(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url) as http:
        http.post("/v2/models/nope/infer", json=BODY)  # every legitimate label set once
        before_text = http.get("/metrics").text
    started = time.monotonic()

    async def rest(names: list[str]) -> set[int]:
        """Pipelined HTTP/1.1 on a few connections: a Python HTTP client would be the bottleneck."""
        body = json.dumps(BODY).encode()

        async def one_connection(batch: list[str]) -> list[int]:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            for name in batch:
                path = "/v2/models/" + urllib.parse.quote(name, safe="") + "/infer"
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            await writer.drain()
            statuses = []
            for _ in batch:
                head = await reader.readuntil(b"\r\n\r\n")
                statuses.append(int(head.split(b" ", 2)[1]))
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length[1]) if length else 0)
            writer.close()
            return statuses

        batches = [names[i::8] for i in range(8)]
        return {
            s for statuses in await asyncio.gather(*(one_connection(b) for b in batches)) for s in statuses
        }

    async def over_grpc(names: list[str]) -> set[str]:
        limits = asyncio.Semaphore(16)
        async with grpc.aio.insecure_channel(gw.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def one(name: str) -> str:
                request = service_pb2.ModelInferRequest(model_name=name)
                request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
                request.raw_input_contents.append(np.array([X], np.float32).tobytes())
                async with limits:
                    try:
                        await stub.ModelInfer(request)
                        return "OK"
                    except grpc.aio.AioRpcError as error:
                        return error.code().name

            return set(await asyncio.gather(*(one(n) for n in names)))

    def junk(first: int, count: int) -> tuple[list[str], list[str]]:
        numbers = range(first, first + count)
        over_rest = [f"junk-{i}" for i in numbers[::2]] + [
            f"modèle{i}" for i in numbers[1::2]
        ]  # Triton 404; 400
        # Triton cuts names at a NUL and would serve echo; long names; one 4 MiB name
        over_grpc_ = [f"echo\0{i}" for i in numbers[::2]] + [
            f"{i}" + "x" * (200 + i % 1000) for i in numbers[1::2]
        ]
        return over_rest, over_grpc_

    def send(first: int, count: int) -> int:
        names_rest, names_grpc = junk(first, count)
        rest_statuses = asyncio.run(rest(names_rest))
        grpc_codes = asyncio.run(over_grpc(names_grpc))
        assert rest_statuses == {400, 404} and grpc_codes == {"INVALID_ARGUMENT"}, (rest_statuses, grpc_codes)
        with httpx.Client(base_url=gw.url) as http:
            return _gateway_series(http.get("/metrics").text)

    before = _gateway_series(before_text)
    after_first = send(0, 2000)  # the label sets for "other" come into being once (per status)
    assert asyncio.run(over_grpc(["m" * (4 << 20)])) == {"INVALID_ARGUMENT"}
    after_all = send(2000, 8000)
    assert after_first - before <= 80, after_first - before
    assert after_all == after_first  # 8,000 more junk names: not one more series
    with httpx.Client(base_url=gw.url) as http:
        after_text = http.get("/metrics").text
    assert len(after_text) < len(before_text) + 20_000
    assert "junk" not in after_text and "\\x00" not in after_text and "modèle" not in after_text
    assert 'model="other"' in after_text
    print(f"10,000 junk names in {time.monotonic() - started:.1f} s")


# --- 5. model loads with overrides ran code on the Triton host -------------------------------------

MODEL_PY = "import os\nos.system('touch /tmp/tritium-pwned')\n"


def _load_with_overrides(gw, model: str, config: dict) -> None:  # type: ignore[no-untyped-def]
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    try:
        client.load_model(
            model, config=json.dumps(config), files={"file:1/model.py": MODEL_PY.encode()}, headers=AUTH
        )
    finally:
        client.close()


def test_load_overrides_are_refused_unless_allowed_and_audited(
    gateway_factory, hostile_triton, tmp_path
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(hostile_triton)
    config = {"backend": "python", "max_batch_size": 0}
    with pytest.raises(InferenceServerException) as info:
        _load_with_overrides(gw, "evil", config)
    assert info.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "may not carry config or file overrides (got config, file:1/model.py)" in info.value.message()
    assert not Path("/tmp/tritium-pwned").exists()
    records = httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"]
    assert not [r for r in records if r["model"] == "evil"]  # refused: nothing was done
    # a plain load is audited as before
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    client.load_model("echo", headers={**AUTH, "x-tritium-actor": "ops"})
    client.close()
    (record,) = [
        r for r in httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"] if r["action"] == "load"
    ]
    assert record["who"].startswith("ops@") and record["detail"] == ""


def test_allowed_overrides_are_audited_with_keys_sizes_and_digest(
    gateway_factory, hostile_triton, tmp_path
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(hostile_triton, allow_model_overrides=True)
    config = json.loads(httpx.get(f"{gw.url}/v2/models/echo/config").text)
    config["version_policy"] = {"specific": {"versions": [1, 2, 3, 4]}}
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    client.load_model("echo", config=json.dumps(config), headers=AUTH)
    client.close()
    (record,) = [
        r for r in httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"] if r["action"] == "load"
    ]
    assert re.fullmatch(r"overrides: config \(\d+ B\); sha256 [0-9a-f]{64}", record["detail"]), record
    _assert_triton_serves(gw)


# --- 6. slow bodies and memory --------------------------------------------------------------------


def _hold_a_body(port: int, declared: int, sent: int, results: list, stop: threading.Event) -> None:
    """Declare `declared` bytes, send `sent` of them, then hold the connection until `stop`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        head = (
            f"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        sock.sendall(head)
        chunk = b" " * (1 << 20)
        remaining = sent
        sock.settimeout(5)
        while remaining > 0:
            try:
                sock.sendall(chunk[: min(len(chunk), remaining)])
            except (TimeoutError, OSError):  # refused early: the gateway stopped reading
                break
            remaining -= len(chunk)
        sock.settimeout(1)
        answer = b""
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            answer += data
        results.append(answer.split(b"\r\n", 1)[0].decode(errors="replace"))
    finally:
        sock.close()


def test_slow_bodies_hold_bounded_memory_and_release_it(hostile_triton, tmp_path) -> None:
    gateway = GatewayProcess(hostile_triton, tmp_path)
    try:
        baseline = gateway.rss_mib()
        stop, results = threading.Event(), []
        threads = [
            threading.Thread(target=_hold_a_body, args=(gateway.port, 63 << 20, 62 << 20, results, stop))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        time.sleep(8)  # every body is as far as it gets; the gateway waits for the rest
        peak, during = gateway.peak_mib(), gateway.rss_mib()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        closed = time.monotonic()
        while gateway.rss_mib() > baseline + 40 and time.monotonic() - closed < 5:
            time.sleep(0.2)
        after = gateway.rss_mib()
        shed = [r for r in results if " 503 " in r]
        print(
            f"gateway RSS: baseline {baseline:.0f} MiB, during {during:.0f}, peak {peak:.0f}, after {after:.0f}"
        )
        assert peak < 300, f"peak RSS {peak:.0f} MiB under 8 x 62 MiB slow bodies"
        assert after <= baseline + 40, (
            f"RSS {after:.0f} MiB 5 s after the connections closed (baseline {baseline:.0f})"
        )
        assert len(shed) >= 6, results  # 128 MiB budget: two 63 MiB bodies at a time, the rest shed
        answer = httpx.post(f"http://127.0.0.1:{gateway.port}/v2/models/echo/infer", json=BODY, timeout=30)
        assert answer.status_code == 200  # the budget is free again
    finally:
        output = gateway.stop()
    assert "Traceback" not in output, output


def test_a_slow_body_is_408_and_shed_requests_say_when_to_retry(
    gateway_factory, hostile_triton, tmp_path
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(
        hostile_triton, body_timeout_s=0.5, max_payload_bytes=1 << 20, max_inflight_body_bytes=1 << 20
    )
    stop, results = threading.Event(), []
    holder = threading.Thread(target=_hold_a_body, args=(gw.http_port, 1 << 20, 1000, results, stop))
    holder.start()
    time.sleep(0.2)  # it holds the whole budget for its declared size
    shed = httpx.post(f"{gw.url}/v2/models/echo/infer", json=BODY)
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert "cannot take" in shed.json()["error"]
    holder.join(timeout=10)
    stop.set()
    assert results and " 408 " in results[0], results
    assert httpx.post(f"{gw.url}/v2/models/echo/infer", json=BODY).status_code == 200


# --- 7, 8. client input answered 5xx, misleading 503 ---------------------------------------------


def test_odd_headers_paths_and_names_are_4xx_never_5xx(gw) -> None:
    labels = {
        "model": "echo",
        "version": "",
        "variant": "",
        "protocol": "rest",
        "status": "400",
        "outcome": "client_error",
    }
    before = requests_total(**labels)
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        answer = http.post(
            "/v2/models/echo/infer", content=b"{}", headers={"inference-header-content-length": b"\xb2"}
        )
        assert (
            answer.status_code == 400
            and "invalid Inference-Header-Content-Length '\\xb2'" in answer.json()["error"]
        )
        answer = http.post("/v2/models/echo/versions/%E6%97%A5/infer", json=BODY)
        assert answer.status_code == 400 and "invalid version '\\u65e5'" in answer.json()["error"]
        assert counted(before + 2, **labels)  # the metrics say what the client got
        long_name = "m" * 10_000
        answer = http.post(f"/v2/models/{long_name}/infer", json=BODY)
        assert answer.status_code == 400 and answer.json()["error"].startswith("invalid model name 'mmmm")
        assert len(answer.text) < 500
        for path in (f"/v2/models/{long_name}", f"/v2/models/{long_name}/ready", "/v2/models/a%00b/config"):
            assert http.get(path).status_code == 400, path
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([X], np.float32))
    for version in ("²", "1.5", "01"):
        with pytest.raises(InferenceServerException) as info:
            client.infer("echo", [x], model_version=version)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT", info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("m" * 10_000)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()
    _assert_triton_serves(gw)


# --- 9. the smaller items ----------------------------------------------------------------------------


def test_files_the_gateway_writes_are_private_and_an_operators_route_file_keeps_its_mode(
    gw, tmp_path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.chmod(0o644)
    weights = {"weights": {"stable": 90, "canary": 10}}
    assert httpx.post(f"{gw.url}/admin/routes/echo/weights", json=weights, headers=AUTH).status_code == 200
    assert stat.S_IMODE(routes.stat().st_mode) == 0o644
    audit = tmp_path / "routes.yaml.audit.jsonl"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    lock = tmp_path / ".routes.yaml.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_ready_of_an_unknown_model_is_404_and_of_an_unloaded_version_400(gw) -> None:
    missing = httpx.get(f"{gw.url}/v2/models/nosuch/ready")
    assert (
        missing.status_code == 404 and "no model 'nosuch' in Triton's repository" in missing.json()["error"]
    )
    unloaded = httpx.get(f"{gw.url}/v2/models/echo/versions/9/ready")
    assert unloaded.status_code == 400 and "echo:9 is not ready" in unloaded.json()["error"]
    assert httpx.get(f"{gw.url}/v2/models/echo/ready").status_code == 200


def test_unloading_an_unknown_model_is_404_and_not_audited(gw) -> None:
    answer = httpx.post(f"{gw.url}/admin/models/nosuch/unload", headers=AUTH)
    assert answer.status_code == 404
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.unload_model("nosuch", headers=AUTH)
    assert info.value.status() == "StatusCode.NOT_FOUND"
    client.close()
    records = httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"]
    assert not [r for r in records if r["model"] == "nosuch"]


def test_405_names_the_allowed_methods(gw) -> None:
    answer = httpx.delete(f"{gw.url}/v2/models/echo/infer")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert answer.json()["error"].startswith("DELETE is not allowed")
    allowed = httpx.put(f"{gw.url}/v2/health/live").headers["allow"]
    assert set(allowed.split(", ")) <= {"GET", "HEAD"} and "GET" in allowed


def test_the_admin_api_can_have_a_port_of_its_own(gateway_factory, hostile_triton, tmp_path) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(hostile_triton, admin_port=0)
    admin_port = gw.gateway.admin_port
    assert admin_port and admin_port != gw.http_port
    assert httpx.get(f"{gw.url}/admin/routes", headers=AUTH).status_code == 404  # not on the inference port
    answer = httpx.get(f"http://127.0.0.1:{admin_port}/admin/routes", headers=AUTH)
    assert answer.status_code == 200 and "echo" in answer.json()["routes"]
    key_header = httpx.get(f"http://127.0.0.1:{admin_port}/admin/routes", headers={"x-api-key": ADMIN_TOKEN})
    assert key_header.status_code == 200  # the documented alternative header
    assert httpx.get(f"http://127.0.0.1:{admin_port}/admin/routes").status_code == 401
    assert httpx.post(f"http://127.0.0.1:{admin_port}/v2/models/echo/infer", json=BODY).status_code == 404
    assert httpx.post(f"{gw.url}/v2/models/echo/infer", json=BODY).status_code == 200


def test_the_admin_port_must_be_free(hostile_triton, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        routes = tmp_path / "routes.yaml"
        routes.write_text(yaml.safe_dump(ROUTES))
        result = subprocess.run(
            [sys.executable, "-m", "tritium.cli", "gateway", "--port", str(free_port()), "--no-grpc",
             "--admin-port", str(port), "--routes", str(routes), "--triton-http", hostile_triton.http_url,
             "--triton-grpc", hostile_triton.grpc_url],
            capture_output=True, text=True, timeout=60, env={**os.environ, "TRITIUM_GATEWAY_ADMIN_TOKEN": "t"},
        )  # fmt: skip
    assert result.returncode == 6, result.stdout + result.stderr
    assert f"cannot serve the admin API on 127.0.0.1:{port}" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_compressed_grpc_message_is_capped_at_its_decoded_size(gw) -> None:
    """gRPC's own compression: the receive limit applies to the decompressed message."""
    request = service_pb2.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 20 << 20])
    request.raw_input_contents.append(bytes(80 << 20))  # 80 MiB of zeros, ~80 KiB compressed
    with grpc.insecure_channel(gw.grpc_url, options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, compression=grpc.Compression.Gzip, timeout=30)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    _assert_triton_serves(gw)


def _send_head(port: int, header_bytes: int, results: list) -> None:
    """A request whose head carries one header of `header_bytes`; the answer's status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * (1 << 20)
            for start in range(0, header_bytes, len(chunk)):
                sock.sendall(chunk[: min(len(chunk), header_bytes - start)])
            results.append(sock.recv(200).split(b"\r\n", 1)[0].decode())
        except OSError as exc:  # closed on us while we were still sending: refused too
            results.append(type(exc).__name__)


def test_request_heads_are_bounded(hostile_triton, tmp_path) -> None:
    """httptools keeps a request line and headers in memory until they end, without a limit."""
    gateway = GatewayProcess(hostile_triton, tmp_path)
    try:
        baseline = gateway.rss_mib()
        results: list[str] = []
        threads = [
            threading.Thread(target=_send_head, args=(gateway.port, 60 << 20, results)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        peak = gateway.peak_mib()
        assert peak < baseline + 30, (
            f"peak RSS {peak:.0f} MiB under 4 x 60 MiB headers (baseline {baseline:.0f})"
        )
        assert len(results) == 4 and all(
            r in ("HTTP/1.1 431 Request Header Fields Too Large", "ConnectionResetError", "BrokenPipeError")
            for r in results
        ), results
        just_over: list[str] = []
        _send_head(gateway.port, 70_000, just_over)
        assert just_over == ["HTTP/1.1 431 Request Header Fields Too Large"], just_over
        big_but_fine = httpx.post(
            f"{gateway.url}/v2/models/echo/infer", json=BODY, headers={"x-token": "t" * 32_000}
        )
        assert big_but_fine.status_code == 200
    finally:
        output = gateway.stop()
    assert "Traceback" not in output, output


def test_slow_heads_and_surplus_connections_are_turned_away(
    gateway_factory, hostile_triton, tmp_path, monkeypatch
) -> None:
    from tritium.gateway import http_protocol

    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 0.5)
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(hostile_triton, max_connections=3)
    silent = socket.create_connection(("127.0.0.1", gw.http_port), timeout=5)
    trickle = socket.create_connection(("127.0.0.1", gw.http_port), timeout=5)
    trickle.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\n")
    kept = socket.create_connection(("127.0.0.1", gw.http_port), timeout=5)
    time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", gw.http_port), timeout=5) as surplus:  # the 4th
        answer = surplus.recv(1000)
    assert (
        answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer and b"max_connections" in answer
    )
    body = json.dumps(BODY).encode()
    head = (
        "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    kept.sendall(head.encode() + body)  # a request sent in time is served
    assert kept.recv(1000).startswith(b"HTTP/1.1 200 OK")
    kept.close()
    for sock in (silent, trickle):  # neither finished a head within 0.5 s (+ one tick)
        assert sock.recv(1000).startswith(b"HTTP/1.1 408 Request Timeout"), sock
        sock.close()
    assert httpx.post(f"{gw.url}/v2/models/echo/infer", json=BODY).status_code == 200  # room again
