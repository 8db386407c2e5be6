"""Fixtures shared by every test package: a real local Triton and a tiny canonical repository.

- ``tiny_repository`` (session): a canonical repository with model ``tiny`` (torch-made ONNX,
  input "x" FP32 [-1, 4], output "y" FP32 [-1, 3], max_batch_size 8, dynamic batching), versions
  1 and 2 (version v computes ``y = v * (x @ W.T) + b``), both served (specific policy). Treat it
  as read-only; copy it (``tiny_repository_copy``) to change it.
- ``write_tiny_version`` : ``(model_dir, version) -> None`` writes one more version of ``tiny``.
- ``local_triton`` (session): a factory ``(repository, **LocalTriton kwargs) -> LocalTriton``
  returning a started, ready server on free loopback ports; every server is stopped at session end
  (call ``.stop()`` to stop one earlier).
- ``tiny_triton`` (session): one shared local Triton serving ``tiny_repository``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property-based tests (hypothesis, schemathesis) keep no example database in the working directory.
settings.register_profile("tritium", database=None, deadline=None)
settings.load_profile("tritium")

TINY_MODEL = "tiny"
TINY_IN = 4
TINY_OUT = 3


def tiny_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((TINY_OUT, TINY_IN)).astype(np.float32), rng.standard_normal(TINY_OUT).astype(
        np.float32
    )


def tiny_expected(x: np.ndarray, version: int) -> np.ndarray:
    weight, bias = tiny_weights()
    return version * (x @ weight.T) + bias


def _export_tiny_onnx(path: Path, version: int) -> None:
    import torch

    weight, bias = tiny_weights()

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(TINY_IN, TINY_OUT, bias=False)
            self.linear.weight.data = torch.from_numpy(weight * version)
            self.bias = torch.nn.Parameter(torch.from_numpy(bias))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.bias

    torch.onnx.export(
        Tiny().eval(),
        (torch.zeros(1, TINY_IN),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )


def tiny_config(versions: list[int]):
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(
        name=TINY_MODEL,
        platform="onnxruntime_onnx",
        max_batch_size=8,
        input=[mc.ModelInput(name="x", data_type=mc.TYPE_FP32, dims=[TINY_IN])],
        output=[mc.ModelOutput(name="y", data_type=mc.TYPE_FP32, dims=[TINY_OUT])],
        instance_group=[mc.ModelInstanceGroup(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)],
        dynamic_batching=mc.ModelDynamicBatching(max_queue_delay_microseconds=5000),
    )
    config.version_policy.specific.versions.extend(sorted(versions))
    return config


def write_tiny_config(model_dir: Path, versions: list[int]) -> None:
    from google.protobuf import text_format

    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(tiny_config(versions)))


def _write_tiny_version(model_dir: Path, version: int) -> None:
    """Add ``version`` to the ``tiny`` model and to its served versions."""
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True)
    _export_tiny_onnx(version_dir / "model.onnx", version)
    served = sorted({int(p.name) for p in model_dir.iterdir() if p.name.isdigit()})
    write_tiny_config(model_dir, served)


@pytest.fixture(scope="session")
def write_tiny_version() -> Callable[[Path, int], None]:
    return _write_tiny_version


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("tiny_repository") / "model_repository"
    for version in (1, 2):
        _write_tiny_version(repository / TINY_MODEL, version)
    return repository


@pytest.fixture
def tiny_repository_copy(tiny_repository: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model_repository"
    shutil.copytree(tiny_repository, target)
    return target


@pytest.fixture(scope="session", autouse=True)
def _triton_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the records of local Tritons (see tritium.serving.registry) inside the test session."""
    previous = os.environ.get("TRITIUM_STATE_DIR")
    os.environ["TRITIUM_STATE_DIR"] = str(tmp_path_factory.mktemp("triton-state"))
    yield
    if previous is None:
        os.environ.pop("TRITIUM_STATE_DIR", None)
    else:
        os.environ["TRITIUM_STATE_DIR"] = previous


@pytest.fixture(scope="session")
def local_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., object]]:
    from tritium.serving.local import LocalTriton

    started: list[LocalTriton] = []

    def start(repository: Path, **kwargs) -> LocalTriton:
        kwargs.setdefault("log_file", tmp_path_factory.mktemp("triton-log") / "tritonserver.log")
        triton = LocalTriton(repository, **kwargs)
        started.append(triton)
        triton.start()
        triton.wait_ready(kwargs.get("ready_timeout_s", 180.0))
        return triton

    yield start
    for triton in started:
        triton.stop()


@pytest.fixture(scope="session")
def tiny_triton(local_triton, tiny_repository: Path):
    return local_triton(tiny_repository)


# Built by the real builder (the lead's fixture module): digits + minilm in a temp repository.
from tests.example_builds import example_builds, example_repository  # noqa: E402, F401
