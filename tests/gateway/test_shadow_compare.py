"""Shadow answers scored against the primary's: decoding both protocols' answers, the scores, and
the agreement a real gateway reports for a real shadow."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from tests.conftest import TINY_IN, TINY_MODEL, tiny_expected
from tests.gateway.conftest import ADMIN_TOKEN
from tritium.gateway.shadow_compare import Agreement, Undecodable, rest_outputs, row_scores

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_rest_answers_decode_json_and_binary_outputs() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    as_json = json.dumps(
        {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 3], "data": y.tolist()}]}
    ).encode()
    np.testing.assert_array_equal(rest_outputs(as_json, None)["y"], y)
    header = json.dumps(
        {
            "outputs": [
                {"name": "y", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}
            ]
        }
    ).encode()
    np.testing.assert_array_equal(rest_outputs(header + y.tobytes(), str(len(header)))["y"], y)
    # Triton compresses answers for clients that accept gzip: decoded with a cap
    np.testing.assert_array_equal(rest_outputs(gzip.compress(as_json), None, "gzip")["y"], y)
    with pytest.raises(Undecodable, match="more than 100 bytes"):
        rest_outputs(gzip.compress(as_json + b" " * 1000), None, "gzip", limit=100)
    with pytest.raises(Undecodable, match="br-encoded"):
        rest_outputs(as_json, None, "br")
    for broken in (b"not json", b'{"outputs": [{"name": "y", "datatype": "NOPE", "shape": [1], "data": [1]}]}',
                   b'{"outputs": [{"name": "y", "datatype": "FP32", "shape": [5], "data": [1]}]}'):  # fmt: skip
        with pytest.raises(Undecodable):
            rest_outputs(broken, None)


def test_scores_are_per_row() -> None:
    a = {"y": np.array([[0.1, 0.9], [0.8, 0.2], [1.0, 0.0]])}
    b = {"y": np.array([[0.2, 0.7], [0.1, 0.9], [2.0, 0.0]])}
    np.testing.assert_array_equal(row_scores(a, b, Agreement.TOP1, None), [1, 0, 1])
    cosine = row_scores(a, b, Agreement.COSINE, "y")
    expected = [
        float(x @ z / np.linalg.norm(x) / np.linalg.norm(z)) for x, z in zip(a["y"], b["y"], strict=True)
    ]
    np.testing.assert_allclose(cosine, expected)
    with pytest.raises(Undecodable, match="shape"):
        row_scores(a, {"y": np.zeros((2, 2))}, Agreement.TOP1, None)
    with pytest.raises(Undecodable, match="not in both"):
        row_scores(a, b, Agreement.TOP1, "z")


ROUTES = {
    "routes": {
        TINY_MODEL: {
            "targets": [{"alias": "stable", "model": TINY_MODEL, "version": "1", "weight": 100}],
            "shadow": {
                "alias": "candidate",
                "model": TINY_MODEL,
                "version": "2",
                "fraction": 1.0,
                "compare": "cosine",
            },
        }
    }
}


def test_a_real_shadow_is_scored_against_the_primary_over_rest_and_grpc(
    gateway_factory, tiny_triton, tmp_path
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(tiny_triton)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, TINY_IN)).astype(np.float32) for _ in range(6)]
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for i, x in enumerate(xs[:4]):
            body = {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [4, TINY_IN], "data": x.ravel().tolist()}
                ]
            }
            if i % 2:  # binary outputs: the shadow decodes Triton's binary-tensor answers too
                body["outputs"] = [{"name": "y", "parameters": {"binary_data": True}}]
            assert http.post(f"/v2/models/{TINY_MODEL}/infer", json=body).status_code == 200
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    for x in xs[4:]:
        tensor = grpcclient.InferInput("x", [4, TINY_IN], "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(TINY_MODEL, [tensor])
    client.close()
    expected = np.concatenate(
        [
            [
                float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
                for a, b in zip(tiny_expected(x, 1), tiny_expected(x, 2), strict=True)
            ]
            for x in xs
        ]
    ).mean()
    deadline = time.monotonic() + 10
    while True:  # the shadows run after the answers
        shadow = httpx.get(f"{gw.url}/admin/routes/{TINY_MODEL}/compare", headers=AUTH).json()["shadow"]
        if shadow["rows"] == 24 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert shadow["rows"] == 24 and shadow["undecodable"] == 0, shadow
    assert shadow["mean_agreement"] == pytest.approx(expected, abs=1e-5) and shadow["mean_agreement"] < 0.999
