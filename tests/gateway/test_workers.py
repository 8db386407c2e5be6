"""`tritium gateway --workers N`: several processes on the same ports behave as one gateway."""

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from tests.gateway.ab_routes import AB_ROUTES, ECHO_BODY, MULTIPLIER, X
from tests.gateway.conftest import ADMIN_TOKEN, free_port

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class WorkersGateway:
    def __init__(self, process: subprocess.Popen, port: int, grpc_port: int, state_dir) -> None:
        self.process, self.port, self.grpc_port, self.state_dir = process, port, grpc_port, state_dir
        self.url = f"http://127.0.0.1:{port}"
        self.warmup_requests = 0

    def infer(self, **kwargs) -> httpx.Response:
        """On a new connection each time, so the kernel spreads the calls over the workers."""
        return httpx.post(f"{self.url}/v2/models/echo/infer", json=ECHO_BODY, timeout=10, **kwargs)

    def answered(self) -> bool:
        """Whether a request got an answer (which the gateway then counted), whatever its status."""
        try:
            self.infer()
        except httpx.HTTPError:
            return False
        return True

    def serving_pids(self) -> set[int]:
        """Workers that counted requests (each writes its own metric file)."""
        metrics_dir = self.state_dir / "metrics"
        return {
            int(m.group(1))
            for f in (metrics_dir.iterdir() if metrics_dir.is_dir() else ())
            if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))
        }


@pytest.fixture
def workers_gateway(triton, tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(AB_ROUTES))
    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "tritium.cli", "gateway",
        "--workers", "2",
        "--state-dir", str(tmp_path / "state"),
        "--routes", str(routes),
        "--port", str(port),
        "--grpc-port", str(grpc_port),
        "--triton-http", triton.http_url,
        "--triton-grpc", triton.grpc_url,
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env={
            **os.environ,
            "TRITIUM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "TRITIUM_GATEWAY_FEEDBACK_KEYS": '["workers-feedback"]',
            "TRITIUM_GATEWAY_CANARY_INTERVAL_S": "0.2",
            "TRITIUM_GATEWAY_ROUTE_REFRESH_S": "0.2",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    gateway = WorkersGateway(process, port, grpc_port, tmp_path / "state")
    deadline = time.monotonic() + 60
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while len(gateway.serving_pids()) < 2:  # until both workers have answered
            gateway.warmup_requests += sum(pool.map(lambda _: gateway.answered(), range(4)))
            assert process.poll() is None and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
    yield gateway
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output
    assert not (tmp_path / "state" / "metrics").exists() or not list(
        (tmp_path / "state" / "metrics").glob("gauge_live*")
    ), "a stopped worker left its live gauges"


def _check(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    variant = answer.headers["x-tritium-variant"]
    assert answer.json()["outputs"][0]["data"] == [MULTIPLIER[variant]] * 4  # never the wrong variant
    return variant


def test_workers_share_the_ports_and_count_as_one(workers_gateway):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        variants = list(pool.map(lambda _: _check(workers_gateway.infer()), range(200)))
    assert 60 < variants.count("canary") < 140  # the 50/50 split holds across workers

    for _ in range(20):  # gRPC: a new channel (connection) per call, through SO_REUSEPORT
        with grpcclient.InferenceServerClient(f"127.0.0.1:{workers_gateway.grpc_port}") as client:
            x = grpcclient.InferInput("x", list(X.shape), "FP32")
            x.set_data_from_numpy(X)
            result = client.infer("echo", [x])
            assert np.array_equal(result.as_numpy("y") / X, np.full_like(X, result.as_numpy("y")[0, 0]))

    assert len(workers_gateway.serving_pids()) == 2, "one worker served everything"
    metrics = httpx.get(f"{workers_gateway.url}/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tritium_gateway_requests_total{") and 'model="echo"' in line
    )
    assert counted == workers_gateway.warmup_requests + 200 + 20  # every worker's, summed


def test_a_route_change_made_through_one_worker_reaches_all(workers_gateway):
    changed = httpx.post(
        f"{workers_gateway.url}/admin/routes/echo/weights",
        json={"weights": {"stable": 0, "canary": 100}},
        headers=AUTH,
    )
    assert changed.status_code == 200, changed.text
    time.sleep(1.0)  # five refresh intervals
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        variants = set(pool.map(lambda _: _check(workers_gateway.infer()), range(100)))
    assert variants == {"canary"}
    assert len(workers_gateway.serving_pids()) == 2
    audit = httpx.get(f"{workers_gateway.url}/admin/audit", headers=AUTH).json()["records"]
    assert [r["action"] for r in audit] == ["set-weights"]


def test_canary_is_judged_on_the_traffic_of_every_worker(workers_gateway, tmp_path):
    routes = {"echo": {"targets": [
        {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
        {"alias": "canary", "model": "echo", "version": "3", "weight": 0},  # v3 always fails
    ]}}  # fmt: skip
    time.sleep(1.1)  # windows count whole seconds: none of the warm-up's v2 answers in the canary's
    put = httpx.put(f"{workers_gateway.url}/admin/routes/echo", json=routes["echo"], headers=AUTH)
    assert put.status_code == 200, put.text
    policy = {"steps": [50, 100], "window_s": 600, "min_requests": 30}
    started = httpx.post(f"{workers_gateway.url}/admin/routes/echo/canary", json=policy, headers=AUTH)
    assert started.status_code == 200, started.text
    time.sleep(1.0)

    canary_answers = 0
    while canary_answers < 30:  # exactly min_requests in all: no one worker alone has enough
        answer = workers_gateway.infer()
        if answer.headers.get("x-tritium-variant") == "canary":
            assert answer.status_code >= 400
            canary_answers += 1
        else:
            _check(answer)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = httpx.get(f"{workers_gateway.url}/admin/routes/echo", headers=AUTH).json()["route"]["canary"]
        if state["state"] != "progressing":
            break
        time.sleep(0.2)
    assert state["state"] == "rolled_back", state
    assert "over 30 requests" in state["reason"], state["reason"]
    assert len(workers_gateway.serving_pids()) == 2


def test_feedback_reaches_the_arm_whichever_worker_takes_it(workers_gateway):
    """Answers and feedback land on different workers (a new connection each): ids are shared."""
    served = {}
    for i in range(40):
        answer = workers_gateway.infer(headers={"x-request-id": f"w{i}"})
        served[f"w{i}"] = _check(answer)
    time.sleep(1.2)  # each worker publishes the ids it answered once a second
    key = {"authorization": "Bearer workers-feedback"}
    for request_id, arm in served.items():
        said = httpx.post(
            f"{workers_gateway.url}/v2/models/echo/feedback",
            json={"request_id": request_id, "correct": arm == "stable"},
            headers=key,
        )
        assert said.status_code == 200 and said.json()["arm"] == arm, said.text
    time.sleep(1.2)
    data = httpx.get(f"{workers_gateway.url}/admin/routes/echo/compare", headers=AUTH).json()
    judged = {arm["arm"]: arm["feedback"]["judged"] for arm in data["arms"]}
    assert sum(judged.values()) == 40
    assert judged == {arm: sum(1 for a in served.values() if a == arm) for arm in judged}


def test_workers_need_fixed_ports_and_a_usable_state_dir(triton, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    common = ["--triton-http", triton.http_url, "--triton-grpc", triton.grpc_url, "--workers", "2"]
    cases = {
        "needs fixed ports": ["--port", "0", "--grpc-port", str(free_port())],
        "state directory": ["--port", str(free_port()), "--no-grpc", "--state-dir", str(blocker / "state")],
    }
    for expected, args in cases.items():
        failed = subprocess.run(
            [sys.executable, "-m", "tritium.cli", "gateway", *common, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert expected in failed.stderr and "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_a_worker_that_cannot_start_says_why_for_the_exit_code(triton, tmp_path):
    from tests.gateway.running import RunningGateway
    from tritium.gateway.settings import load_settings, startup_failure_file

    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: {echo: {targets: [{alias: stable, model: echo, weight: 30}]}}")
    settings = load_settings(
        http_port=free_port(),
        grpc_port=free_port(),
        triton_http_url=triton.http_url,
        triton_grpc_url=triton.grpc_url,
        route_file=routes,
        workers=2,
        state_dir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="did not start"):
        RunningGateway(settings).start()
    code, reason = startup_failure_file(tmp_path).read_text().splitlines()
    assert code == "2" and "add up to 100" in reason  # what `tritium gateway --workers` exits with
