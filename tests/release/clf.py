"""The release tests' model `clf` and their steady client load.

Four versions: 1 and 2 answer alike, 3 answers alike but slowly (a chain of matrix products whose
result is multiplied by zero), 4 answers differently (negated weights).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np

MODEL, IN, OUT = "clf", 16, 4
RNG = np.random.default_rng(3)
W = RNG.standard_normal((OUT, IN)).astype(np.float32)
B = RNG.standard_normal(OUT).astype(np.float32)
X = RNG.standard_normal((1, IN)).astype(np.float32)
EXPECTED = X @ W.T + B


def _export(path: Path, version: int) -> None:
    import torch

    class Clf(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sign = -1.0 if version == 4 else 1.0
            self.linear = torch.nn.Linear(IN, OUT)
            self.linear.weight.data = torch.from_numpy(W * sign)
            self.linear.bias.data = torch.from_numpy(B * sign)
            self.wide = torch.nn.Linear(IN, 1024)
            self.deep = torch.nn.Linear(1024, 1024)  # one weight, used many times: a small file, slow to run

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.linear(x)
            if version == 3:
                h = torch.tanh(self.wide(x))
                for _ in range(250):
                    h = torch.tanh(self.deep(h))
                y = y + 0.0 * h.sum(dim=1, keepdim=True)
            return y

    torch.onnx.export(
        Clf().eval(), (torch.zeros(1, IN),), str(path), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
    )  # fmt: skip


def write_clf_repository(root: Path) -> Path:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    for version in (1, 2, 3, 4):
        (root / MODEL / str(version)).mkdir(parents=True)
        _export(root / MODEL / str(version) / "model.onnx", version)
    config = mc.ModelConfig(
        name=MODEL, platform="onnxruntime_onnx", max_batch_size=8,
        input=[mc.ModelInput(name="x", data_type=mc.TYPE_FP32, dims=[IN])],
        output=[mc.ModelOutput(name="y", data_type=mc.TYPE_FP32, dims=[OUT])],
        instance_group=[mc.ModelInstanceGroup(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)],
    )  # fmt: skip
    config.version_policy.specific.versions.extend([1, 2, 3, 4])
    (root / MODEL / "config.pbtxt").write_text(text_format.MessageToString(config))
    return root


class SteadyLoad:
    """Clients sending requests the whole time, checking every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.answers = 0
        self.failures: list[str] = []
        self.variants: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, IN], "data": X.ravel().tolist()}]}
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    answer = http.post(f"/v2/models/{MODEL}/infer", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"transport: {exc}")
                    continue
                self.answers += 1
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                got = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(EXPECTED.shape)
                if not np.allclose(got, EXPECTED, atol=1e-4):
                    self.failures.append(
                        f"wrong answer from {answer.headers.get('x-tritium-variant')}: {got}"
                    )
                variant = answer.headers.get("x-tritium-variant", "?")
                self.variants[variant] = self.variants.get(variant, 0) + 1
                time.sleep(0.005)

    def __enter__(self) -> SteadyLoad:
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
