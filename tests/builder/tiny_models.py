"""Tiny torch models and recipes built in a temp folder, for fast end-to-end builder tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn


class TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FixesBatch(nn.Module):
    """Turns the batch size into a Python int: the export silently hard-codes it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(int(x.shape[0]), -1))


class UsesFft(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real[:, :4]


class VarArgs(nn.Module):
    """Takes ``*inputs``: tracing and ONNX export accept it, TorchScript's compiler does not."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs[0])


class TinyBertEncoder(nn.Module):
    """A one-layer, randomly initialized BERT (no download): the first token's hidden state.

    onnxruntime's symbolic shape inference cannot finish on BERT's attention-mask graph, and then
    writes ``sym_shape_infer_temp.onnx`` (and its external data) into the working directory.
    """

    def __init__(self) -> None:
        super().__init__()
        import transformers

        config = transformers.BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        self.bert = transformers.BertModel(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def var_args() -> VarArgs:
    torch.manual_seed(0)
    return VarArgs()


def tiny_bert() -> TinyBertEncoder:
    torch.manual_seed(0)
    return TinyBertEncoder()


def tiny_classifier() -> TinyClassifier:
    torch.manual_seed(0)
    return TinyClassifier()


def fixes_batch() -> FixesBatch:
    torch.manual_seed(0)
    return FixesBatch()


def uses_fft() -> UsesFft:
    return UsesFft()


def broken_factory() -> nn.Module:
    raise RuntimeError("weights server unreachable")


def write_tiny_project(folder: Path, **overrides) -> Path:
    """A trained-enough tiny classifier (labels = the model's own argmax), data and a recipe."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    with torch.inference_mode():
        labels = tiny_classifier()(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(folder / "val.npz", x=x, labels=labels)
    np.savez(folder / "calib.npz", x=x[:64])
    recipe = {
        "name": "tiny",
        "source": {"kind": "pytorch", "factory": "tests.builder.tiny_models:tiny_classifier"},
        "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 16], "range": [-2, 2]}],
        "outputs": [{"name": "logits"}],
        "validation": {"dataset": {"kind": "npz", "path": "val.npz", "batch_size": 64}, "metric": "top1"},
        "budget": 0.05,
        # On a 16-256-256-4 MLP at batch <= 8, quantizing the activations costs more than the tiny
        # matmuls save: INT8 measured 1.3-1.5x slower than FP32 here, so the INT8 variants of this
        # accuracy/lineage fixture are judged on size (test_old_onnx covers the latency rule).
        "variants": [
            {"kind": "onnx-fp32"},
            {"kind": "onnx-int8-dynamic", "per_channel": True, "objective": "size"},
            {
                "kind": "onnx-int8-static",
                "objective": "size",
                "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
            },
            {"kind": "onnx-fp16"},
            {"kind": "torchscript"},
        ],
        "triton": {"max_batch_size": 8},
        "profile": {"iterations": 3, "warmup": 1, "max_seconds_per_point": 0.2},
        "performance": {"seconds": 0.1},  # microsecond calls: 7 rounds of 10 ms are plenty
    }
    for key, value in overrides.items():
        recipe[key] = value
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def write_bert_project(folder: Path, **overrides) -> Path:
    """The tiny BERT, token-id data and a recipe with a static INT8 variant (no performance objective)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, size=(16, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    np.savez(folder / "val.npz", input_ids=ids, attention_mask=mask)
    np.savez(folder / "calib.npz", input_ids=ids[:8], attention_mask=mask[:8])
    recipe = {
        "name": "tinybert",
        "source": {"kind": "pytorch", "factory": "tests.builder.tiny_models:tiny_bert"},
        "inputs": [
            {"name": "input_ids", "dtype": "INT64", "shape": ["batch", "sequence"], "range": [1, 100]},
            {"name": "attention_mask", "dtype": "INT64", "shape": ["batch", "sequence"], "range": [1, 2]},
        ],
        "outputs": [{"name": "embedding"}],
        "validation": {
            "dataset": {"kind": "npz", "path": "val.npz", "labels": None, "batch_size": 8},
            "metric": "cosine",
        },
        "budget": 1.0,
        "variants": [
            {
                "kind": "onnx-int8-static",
                "per_channel": False,
                "objective": "none",  # not about speed or size (on a model this small QDQ adds bytes)
                "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
            }
        ],
        "triton": {"max_batch_size": 4},
        "export": {"verify_batch_sizes": [1, 2], "verify_dims": {"sequence": [5, 12]}},
        "profile": {
            "iterations": 3,
            "warmup": 1,
            "max_seconds_per_point": 0.2,
            "fixed_dims": {"sequence": 12},
        },
    }
    recipe.update(overrides)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
