"""Device selection: CUDA asked for where there is none fails in one line before any work; a
session that asked for CUDA and got the CPU is an error; GPU instance groups and providers in the
served runtime. The GPU paths themselves run where a GPU is (marked ``gpu``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.builder.tiny_models import write_tiny_project
from tritium.builder.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    CudaSupport,
    check_device,
    check_session_providers,
    cuda_support,
    ort_providers,
    with_device,
)
from tritium.builder.pipeline import build_recipe
from tritium.builder.recipe import load_recipe
from tritium.errors import RecipeError, UnavailableError
from tritium.serving.runtime_repo import runtime_config

NO_GPU = not cuda_support().any
needs_gpu = pytest.mark.skipif(NO_GPU, reason="no CUDA device here (torch and onnxruntime see none)")


def test_cpu_needs_nothing():
    check_device("cpu", support=CudaSupport(ort_cuda=False, torch_cuda=False))


@pytest.mark.parametrize(
    ("support", "needs_torch", "missing"),
    [
        (
            CudaSupport(False, False),
            True,
            "torch sees no CUDA device; onnxruntime has no CUDAExecutionProvider",
        ),
        (CudaSupport(False, True), True, "onnxruntime has no CUDAExecutionProvider"),
        (CudaSupport(True, False), True, "torch sees no CUDA device"),
        (CudaSupport(False, False), False, "onnxruntime has no CUDAExecutionProvider"),
    ],
)
def test_cuda_without_what_it_needs_is_one_line_naming_the_fix(support, needs_torch, missing):
    with pytest.raises(UnavailableError) as caught:
        check_device("cuda", needs_torch=needs_torch, support=support)
    text = caught.value.one_line()
    assert missing in text and "\n" not in text
    assert "profile.device: cpu" in text and "onnxruntime-gpu" in text


def test_cuda_with_both_passes():
    check_device("cuda", support=CudaSupport(ort_cuda=True, torch_cuda=True))


def test_providers_put_cuda_first_with_the_cpu_for_unsupported_ops():
    assert ort_providers("cpu") == [CPU_PROVIDER]
    assert ort_providers("cuda", 1) == [(CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER]


def test_a_fallback_to_the_cpu_provider_is_an_error():
    check_session_providers("cuda", [CUDA_PROVIDER, CPU_PROVIDER], "m")
    check_session_providers("cpu", [CPU_PROVIDER], "m")
    with pytest.raises(
        UnavailableError, match="fell back to CPUExecutionProvider instead of CUDAExecutionProvider"
    ):
        check_session_providers("cuda", [CPU_PROVIDER], "m")


@pytest.mark.skipif(not NO_GPU, reason="checks the CPU-only onnxruntime's silent fallback")
def test_a_real_onnxruntime_session_asked_for_cuda_here_is_refused(tmp_path):
    import torch

    from tritium.builder.runners import OrtRunner

    path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), dynamo=False)
    assert OrtRunner(path, "m", device="cpu").run({"onnx::Gemm_0": np.zeros((1, 4), np.float32)})
    with pytest.raises(UnavailableError, match="fell back to CPUExecutionProvider"):
        OrtRunner(path, "m", device="cuda")


@pytest.mark.skipif(not NO_GPU, reason="a machine with a GPU can build on it")
def test_a_cuda_recipe_here_fails_before_any_work(tmp_path):
    recipe = write_tiny_project(tmp_path / "p", profile={"device": "cuda"})
    started = time.perf_counter()
    with pytest.raises(UnavailableError, match="the recipe asks for device cuda"):
        build_recipe(recipe, repository=tmp_path / "repo", output_dir=tmp_path / "out", show_progress=False)
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "repo").exists() and not (tmp_path / "out").exists()


@pytest.mark.skipif(not NO_GPU, reason="a machine with a GPU can build on it")
def test_the_device_option_overrides_the_recipe(tmp_path):
    recipe = write_tiny_project(tmp_path / "p")
    with pytest.raises(UnavailableError):
        build_recipe(recipe, repository=tmp_path / "repo", show_progress=False, device="cuda")
    loaded = load_recipe(recipe)
    assert with_device(loaded, "cuda").recipe.profile.device == "cuda"
    assert with_device(loaded, None) is loaded
    with pytest.raises(RecipeError, match="unknown device 'tpu' — use one of: cpu, cuda"):
        with_device(loaded, "tpu")


@pytest.mark.skipif(not NO_GPU, reason="a machine with a GPU can build on it")
def test_cli_device_cuda_exits_6_in_one_line(tmp_path):
    import subprocess
    import sys

    recipe = write_tiny_project(tmp_path / "p")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tritium.cli import main; sys.exit(main())", "build", str(recipe),
         "-r", str(tmp_path / "repo"), "--device", "cuda", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "device cuda" in lines[0]


def test_fp16_is_judged_on_latency_on_a_gpu_unless_the_recipe_says():
    from tritium.builder.device import objective_on
    from tritium.builder.recipe import Objective, OnnxFp16Variant, OnnxFp32Variant

    assert objective_on(OnnxFp16Variant(), "cpu") is Objective.SIZE
    assert objective_on(OnnxFp16Variant(), "cuda") is Objective.LATENCY
    assert objective_on(OnnxFp16Variant(objective="size"), "cuda") is Objective.SIZE
    assert objective_on(OnnxFp32Variant(), "cuda") is Objective.LATENCY


def _canonical(kind: int, platform: str = "onnxruntime_onnx", backend: str = "") -> mc.ModelConfig:
    config = mc.ModelConfig(name="m", platform=platform, backend=backend, max_batch_size=8)
    config.instance_group.add(count=1, kind=kind, gpus=[0])
    return config


def test_gpu_instance_groups_stay_on_a_gpu_machine_and_become_cpu_elsewhere():
    gpu = mc.ModelInstanceGroup.KIND_GPU
    on_gpu = runtime_config(_canonical(gpu), gpus=True)
    assert on_gpu.instance_group[0].kind == gpu and list(on_gpu.instance_group[0].gpus) == [0]
    on_cpu = runtime_config(_canonical(gpu), gpus=False)
    assert (
        on_cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and not on_cpu.instance_group[0].gpus
    )
    openvino = runtime_config(_canonical(gpu, platform="", backend="openvino"), gpus=True)
    assert openvino.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


@pytest.mark.gpu
@needs_gpu
def test_a_cuda_session_runs_on_the_gpu(tmp_path):
    import torch

    from tritium.builder.runners import OrtRunner

    path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), dynamo=False)
    runner = OrtRunner(path, "m", device="cuda")
    assert runner.session.get_providers()[0] == CUDA_PROVIDER
