"""Run a model on named numpy inputs, whatever it is: torch eager, TorchScript or ONNX Runtime."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tritium.builder.data import EvalSet, Inputs

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
    ) -> None:
        import torch

        self._torch = torch
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
                *[torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
            )
        if isinstance(result, dict):
            result = [result[n] for n in self.output_names]
        elif not isinstance(result, list | tuple):
            result = [result]
        return {n: t.detach().cpu().numpy() for n, t in zip(self.output_names, result, strict=False)}


class OrtRunner:
    """An onnxruntime CPU session (all graph optimizations on, as Triton's ORT backend does)."""

    def __init__(self, path: Path, label: str, threads: int | None = None, *, spinning: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spinning:  # idle pool threads sleep instead of spinning (as the served runtime does)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.label = label

    def run(self, inputs: Inputs) -> Outputs:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs), strict=True))


def run_eval_set(runner: Runner, eval_set: EvalSet) -> Outputs:
    """Run every batch and concatenate each output along the batch axis."""
    collected: dict[str, list[np.ndarray]] = {}
    for batch in eval_set.batches:
        for name, array in runner.run(batch.inputs).items():
            collected.setdefault(name, []).append(
                np.asarray(array, dtype=np.float64 if array.dtype.kind == "f" else None)
            )
    return {name: np.concatenate(parts) for name, parts in collected.items()}
