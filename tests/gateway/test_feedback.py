"""Request ids on every answer, and feedback on answers per arm, through the real gateway."""

from __future__ import annotations

import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from scipy import stats

from tests.gateway.conftest import ADMIN_TOKEN
from tritium.cli import main
from tritium.gateway.compare import reward_p_value
from tritium.gateway.feedback import FeedbackCounts

KEY = "feedback-key-1"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
FEEDBACK = {"authorization": f"Bearer {KEY}"}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 50},
                {"alias": "canary", "model": "echo", "version": "2", "weight": 50},
            ]
        }
    }
}


@pytest.fixture
def gw(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory(feedback_keys=[KEY], feedback_rate_per_s=1000)


def test_every_answer_carries_a_request_id(gw) -> None:
    with httpx.Client(base_url=gw.url) as http:
        made = http.post("/v2/models/echo/infer", json=BODY).headers["x-request-id"]
        kept = http.post("/v2/models/echo/infer", json=BODY, headers={"x-request-id": "order-42:a.b"})
        refused = http.post("/v2/models/echo/infer", json=BODY, headers={"x-request-id": "bad id!" * 20})
        error = http.post("/v2/models/echo/infer", content=b"{}", headers={"x-request-id": "mine"})
    assert made and made != refused.headers["x-request-id"]
    assert (
        kept.headers["x-request-id"] == "order-42:a.b" and refused.headers["x-request-id"] != "bad id!" * 20
    )
    assert error.status_code == 400 and error.headers["x-request-id"] == "mine"
    with grpc.insecure_channel(gw.grpc_url) as channel:
        client = grpcclient.InferenceServerClient(gw.grpc_url)
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        client.infer("echo", [x], headers={"x-request-id": "grpc-1"})
        client.close()
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        request = service_pb2.ModelInferRequest(model_name="echo")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
        _, call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
            request, metadata=(("x-request-id", "grpc-2"),)
        )
    assert dict(call.trailing_metadata())["x-request-id"] == "grpc-2"


def _answer(http: httpx.Client, request_id: str) -> str:
    answer = http.post("/v2/models/echo/infer", json=BODY, headers={"x-request-id": request_id})
    assert answer.status_code == 200
    return answer.headers["x-tritium-variant"]


def test_feedback_is_counted_for_the_arm_that_answered(gw, capsys) -> None:
    with httpx.Client(base_url=gw.url) as http:
        arms = {f"r{i}": _answer(http, f"r{i}") for i in range(60)}
        for request_id, arm in arms.items():  # stable's answers are right, the canary's half of them
            correct = arm == "stable" or int(request_id[1:]) % 2 == 0
            said = http.post(
                "/v2/models/echo/feedback",
                json={"request_id": request_id, "correct": correct},
                headers=FEEDBACK,
            )
            assert said.status_code == 200 and said.json()["arm"] == arm
            reward = http.post(
                "/v2/models/echo/feedback",
                json={"request_id": request_id, "reward": 1.0 if correct else 0.2},
                headers=FEEDBACK,
            )
            assert reward.status_code == 200
        data = http.get("/admin/routes/echo/compare?minutes=5", headers=AUTH).json()
    feedback = {arm["arm"]: arm["feedback"] for arm in data["arms"]}
    n_stable = sum(1 for a in arms.values() if a == "stable")
    assert feedback["stable"]["judged"] == n_stable and feedback["stable"]["accuracy"] == 1.0
    assert feedback["canary"]["judged"] == 60 - n_stable and 0.2 < feedback["canary"]["accuracy"] < 0.8
    assert feedback["stable"]["mean_reward"] == pytest.approx(1.0)
    (diff,) = data["differences"]
    assert diff["accuracy_p_value"] < 0.01
    assert main(["routes", "compare", "echo", "--url", gw.url, "--token", ADMIN_TOKEN]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_feedback_is_bounded_and_needs_its_own_key(gw, gateway_factory, tmp_path) -> None:
    with httpx.Client(base_url=gw.url) as http:
        _answer(http, "known")

        def post(body: dict, headers: dict = FEEDBACK, model: str = "echo") -> httpx.Response:
            return http.post(f"/v2/models/{model}/feedback", json=body, headers=headers)

        assert post({"request_id": "known", "correct": True}, headers={}).status_code == 401
        not_admin = post({"request_id": "known", "correct": True}, headers=AUTH)
        assert not_admin.status_code == 403  # the admin token is no feedback key
        unknown = post({"request_id": "never-seen", "correct": True})
        assert unknown.status_code == 404 and "no recent request 'never-seen'" in unknown.json()["error"]
        for bad in ({"request_id": "known"}, {"request_id": "known", "correct": True, "reward": 1},
                    {"request_id": "known", "reward": "x"}, {"request_id": "a b", "correct": True}, {"extra": 1}):  # fmt: skip
            answer = post(bad)
            assert answer.status_code == 400 and answer.json()["error"].startswith("invalid feedback"), bad
        big = http.post(
            "/v2/models/echo/feedback",
            content=b"{" + b" " * 2000 + b"}",
            headers={**FEEDBACK, "content-type": "application/json"},
        )
        assert big.status_code == 413
        other = post({"request_id": "known", "correct": True}, model="other")
        assert other.status_code == 404  # the id belongs to echo
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    slow = gateway_factory(feedback_keys=[KEY], feedback_rate_per_s=2)
    off = gateway_factory()
    with httpx.Client(base_url=slow.url) as http:
        _answer(http, "k")
        codes = [
            http.post(
                "/v2/models/echo/feedback", json={"request_id": "k", "correct": True}, headers=FEEDBACK
            ).status_code
            for _ in range(6)
        ]
        limited = http.post(
            "/v2/models/echo/feedback", json={"request_id": "k", "correct": True}, headers=FEEDBACK
        )
    assert codes[:2] == [200, 200] and 429 in codes
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    disabled = httpx.post(
        f"{off.url}/v2/models/echo/feedback", json={"request_id": "k", "correct": True}, headers=FEEDBACK
    )
    assert disabled.status_code == 403 and "feedback is not taken here" in disabled.json()["error"]


def test_reward_test_matches_welch_for_large_samples() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1.0, 0.5, 3000), rng.normal(1.04, 0.7, 2500)

    def counts(x: np.ndarray) -> FeedbackCounts:
        return FeedbackCounts(rewarded=len(x), reward_sum=float(x.sum()), reward_squares=float((x**2).sum()))

    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert reward_p_value(counts(a), counts(b)) == pytest.approx(expected, rel=0.01)


def test_an_answer_older_than_the_window_takes_no_feedback(gateway_factory, tmp_path) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(feedback_keys=[KEY], feedback_window_s=0.5)
    with httpx.Client(base_url=gw.url) as http:
        _answer(http, "old")
        time.sleep(0.8)
        late = http.post(
            "/v2/models/echo/feedback", json={"request_id": "old", "correct": True}, headers=FEEDBACK
        )
    assert late.status_code == 404
