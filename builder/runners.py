"""Run a model on named numpy inputs, whatever it is: torch eager, TorchScript or ONNX Runtime."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tritium.builder.data import EvalSet, Inputs
from tritium.builder.device import Device, check_session_providers, ort_providers, torch_device

Outputs = dict[str, np.ndarray]


class Runner(Protocol):
    label: str

    def run(self, inputs: Inputs) -> Outputs: ...


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class TorchRunner:
    """Calls ``module(*inputs)`` in the recipe's input order, under ``inference_mode``."""

    def __init__(
        self,
        module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        label: str,
        threads: int | None = None,
        device: Device = "cpu",
    ) -> None:
        import torch

        self._torch = torch
        self.device = torch_device(device)
        if self.device != "cpu":
            import copy

            # a copy: Module.to() moves in place, and the export, TorchScript tracing and QAT go on
            # using the source module with CPU inputs
            module = copy.deepcopy(module).to(self.device)
        self.module = module
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.label = label
        self.threads = threads

    def run(self, inputs: Inputs) -> Outputs:
        torch = self._torch
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            result = self.module(
                *[torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in self.input_names]
            )
        if isinstance(result, dict):
            result = [result[n] for n in self.output_names]
        elif not isinstance(result, list | tuple):
            result = [result]
        return {n: t.detach().cpu().numpy() for n, t in zip(self.output_names, result, strict=False)}


class OrtRunner:
    """An onnxruntime session (all graph optimizations on, as Triton's ORT backend does), on the CPU or
    with the CUDA provider (checked to be the one actually used)."""

    def __init__(
        self,
        path: Path,
        label: str,
        threads: int | None = None,
        *,
        spinning: bool = True,
        device: Device = "cpu",
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spinning:  # idle pool threads sleep instead of spinning (as the served runtime does)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=ort_providers(device))
        check_session_providers(device, self.session.get_providers(), f"{label} ({path.name})")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.label = label

    def run(self, inputs: Inputs) -> Outputs:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs), strict=True))


class OpenVinoRunner:
    """An OpenVINO IR (or ONNX file) compiled for OpenVINO's CPU plugin, tuned for latency.

    ``precision``: the plugin's ``INFERENCE_PRECISION_HINT`` ("f32"; or None for its default, bf16
    where the CPU has it). ``threads``: its ``INFERENCE_NUM_THREADS`` (default all cores).
    """

    def __init__(
        self,
        path: Path,
        label: str,
        threads: int | None = None,
        precision: str | None = "f32",
        output_names: Sequence[str] | None = None,
    ) -> None:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or default_threads()}
        if precision and precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        # a tensor may carry several names after conversion: use the one the recipe declares
        wanted = set(output_names or ())
        self.output_names = [
            next((n for n in sorted(o.get_names()) if n in wanted), min(o.get_names()))
            for o in self.compiled.outputs
        ]
        self.label = label

    def run(self, inputs: Inputs) -> Outputs:
        # outputs come back as copies (share_outputs off): the request reuses its buffers
        result = self.request.infer(
            {k: np.ascontiguousarray(v) for k, v in inputs.items()}, share_inputs=True
        )
        return {
            name: result[output]
            for name, output in zip(self.output_names, self.compiled.outputs, strict=True)
        }


def run_eval_set(runner: Runner, eval_set: EvalSet) -> Outputs:
    """Run every batch and concatenate each output along the batch axis."""
    collected: dict[str, list[np.ndarray]] = {}
    for batch in eval_set.batches:
        for name, array in runner.run(batch.inputs).items():
            collected.setdefault(name, []).append(
                np.asarray(array, dtype=np.float64 if array.dtype.kind == "f" else None)
            )
    return {name: np.concatenate(parts) for name, parts in collected.items()}
