"""Where a build validates and profiles: the CPU, or a CUDA GPU through onnxruntime's CUDA provider
and torch CUDA.

Asking for CUDA on a machine without one stops the build in one line before any work
(:func:`check_device`). A session that asked for the CUDA provider and silently got the CPU one
(onnxruntime-gpu without the CUDA/cuDNN libraries it was built for does exactly that) is an error,
never a CPU measurement reported as a GPU one (:func:`check_session_providers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from tritium.errors import RecipeError, UnavailableError

if TYPE_CHECKING:
    from tritium.builder.recipe import LoadedRecipe

Device = Literal["cpu", "cuda"]
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GPU_INSTALL_HINT = (
    "run on a machine with an NVIDIA GPU and the GPU install (onnxruntime-gpu with the nvidia-*-cu12 "
    "wheels, docs/gpu.md), or set profile.device: cpu"
)


@dataclass(frozen=True)
class CudaSupport:
    """What this environment can run on a GPU: onnxruntime's CUDA provider, torch CUDA, or neither."""

    ort_cuda: bool
    torch_cuda: bool

    @property
    def any(self) -> bool:
        return self.ort_cuda or self.torch_cuda


def cuda_support() -> CudaSupport:
    import importlib.util

    ort_cuda = False
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        # listed by onnxruntime-gpu even without a GPU: the session check below is the real one
        ort_cuda = CUDA_PROVIDER in ort.get_available_providers()
    torch_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    return CudaSupport(ort_cuda=ort_cuda, torch_cuda=torch_cuda)


def check_device(device: Device, *, needs_torch: bool = True, support: CudaSupport | None = None) -> None:
    """Raise an UnavailableError when ``device`` cannot be used here (before the build does any work).

    Every variant but TorchScript runs in onnxruntime, so CUDA needs its CUDA provider; a PyTorch
    source (the baseline) needs torch CUDA as well.
    """
    if device == "cpu":
        return
    support = support or cuda_support()
    missing = []
    if needs_torch and not support.torch_cuda:
        missing.append("torch sees no CUDA device")
    if not support.ort_cuda:
        missing.append("onnxruntime has no CUDAExecutionProvider (the CPU-only onnxruntime is installed)")
    if missing:
        raise UnavailableError(
            f"the recipe asks for device cuda, but {'; '.join(missing)}", hint=GPU_INSTALL_HINT
        )


def ort_providers(device: Device, device_id: int = 0) -> list:
    """The execution providers to ask onnxruntime for on ``device`` (CUDA first, CPU for unsupported ops).

    For CUDA, onnxruntime-gpu (1.21+) is first asked to load the CUDA and cuDNN libraries of the
    ``nvidia-*`` wheels (``preload_dlls``): the GPU install has no system CUDA.
    """
    if device == "cpu":
        return [CPU_PROVIDER]
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None and CUDA_PROVIDER in ort.get_available_providers():
        preload()
    return [(CUDA_PROVIDER, {"device_id": device_id}), CPU_PROVIDER]


def check_session_providers(device: Device, used: list[str], what: str) -> None:
    """Fail when a session meant for the GPU fell back to the CPU provider."""
    if device == "cuda" and (not used or used[0] != CUDA_PROVIDER):
        raise UnavailableError(
            f"{what}: onnxruntime fell back to {used[0] if used else 'no provider'} instead of "
            f"{CUDA_PROVIDER} (missing CUDA/cuDNN libraries or no GPU)",
            hint=GPU_INSTALL_HINT,
        )


def torch_device(device: Device) -> str:
    return "cuda" if device == "cuda" else "cpu"


def with_device(loaded: LoadedRecipe, device: str | None) -> LoadedRecipe:
    """``loaded`` with ``profile.device`` replaced by ``device`` (``--device``), when one is given."""
    if device is None:
        return loaded
    if device not in get_args(Device):
        raise RecipeError(f"unknown device {device!r}", hint=f"use one of: {', '.join(get_args(Device))}")
    profile = loaded.recipe.profile.model_copy(update={"device": device})
    recipe = loaded.recipe.model_copy(update={"profile": profile})
    return loaded.model_copy(update={"recipe": recipe})


def objective_on(variant, device: Device):
    """The objective a variant is judged by on ``device``: FP16 on a GPU, where it pays, is judged on
    latency unless the recipe set its objective (on a CPU, without FP16 arithmetic, on size)."""
    from tritium.builder.recipe import Objective

    if device == "cuda" and variant.kind == "onnx-fp16" and "objective" not in variant.model_fields_set:
        return Objective.LATENCY
    return variant.objective
