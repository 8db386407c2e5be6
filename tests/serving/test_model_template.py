"""The generated model's runners outside Triton, with the real onnxruntime and OpenVINO: a GPU
instance whose onnxruntime session is not on the CUDA provider refuses to load (CPU-only
onnxruntime here); on a GPU machine with the GPU install it runs there (marked ``gpu``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tritium.serving.runtime_repo import TEMPLATE


@pytest.fixture(scope="module")
def template():
    spec = importlib.util.spec_from_file_location("tritium_model_template", TEMPLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "model.onnx"
    torch.onnx.export(
        torch.nn.Linear(4, 2),
        (torch.zeros(1, 4),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
    )
    return path


def test_a_cpu_instance_runs_on_the_cpu(template, onnx_file):
    run = template._onnxruntime_runner(str(onnx_file), 1, ["x"], ["y"], "0")
    assert run([np.ones((1, 4), np.float32)])[0].shape == (1, 2)


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="checks the refusal under a CPU-only onnxruntime",
)
def test_a_gpu_instance_refuses_a_session_that_fell_back_to_the_cpu(template, onnx_file):
    with pytest.raises(
        RuntimeError, match="uses CPUExecutionProvider, not CUDAExecutionProvider; install onnxruntime-gpu"
    ):
        template._onnxruntime_runner(str(onnx_file), 1, ["x"], ["y"], "0", gpu=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_a_gpu_torchscript_instance_without_cuda_refuses(template, tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4)).save(str(path))
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        template._torchscript_runner(str(path), 1, ["x"], ["y"], "0", gpu=0)


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="needs onnxruntime-gpu and a GPU (docs/gpu.md)",
)
def test_a_gpu_instance_runs_on_the_cuda_provider(template, onnx_file):
    run = template._onnxruntime_runner(str(onnx_file), 1, ["x"], ["y"], "0", gpu=0)
    assert run([np.ones((1, 4), np.float32)])[0].shape == (1, 2)
