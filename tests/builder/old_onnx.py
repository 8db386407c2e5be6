"""ONNX files written the way older exporters (and public model zoos) wrote them, and recipes for them.

``write_old_onnx`` exports a small, seeded, conv-heavy torch model the old way: IR version 3 with
every weight also listed as a graph input, opset 9, a fixed batch dimension of 1, and tensor
names with '/' and starting with a digit. ``write_old_project`` adds a validation set, a
calibration set and a recipe written as a new user would write it from the file: the input shape
copied from the model, ``triton.max_batch_size`` left out.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml
from torch import nn

INPUT = "image/0"  # '/' inside, as in zoo models ("data_0", "input/1", "0")
OUTPUT = "0_probs/out"  # starts with a digit
SHAPE = [1, 3, 32, 32]
CLASSES = 10


class SmallConvNet(nn.Module):
    """Three 3x3 convolutions and a linear head: almost all weights are in convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.features(x), dim=1)


def write_old_onnx(path: Path, *, ir_version: int = 3, opset: int = 9) -> Path:
    """Export :class:`SmallConvNet` as an old exporter did (see the module docstring)."""
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the fold into the conv matters
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(SHAPE),),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=opset,
            keep_initializers_as_inputs=True,  # IR < 4: every weight is also a graph input
            dynamo=False,
        )  # no dynamic_axes: the batch dimension is fixed to 1
    proto = onnx.load(str(path))
    proto.ir_version = ir_version
    onnx.save(proto, str(path))
    return path


def reference_outputs(model: Path, images: np.ndarray) -> np.ndarray:
    """The model's outputs for each image, one call per image (the model takes batch 1 only)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([OUTPUT], {INPUT: images[i : i + 1]})[0] for i in range(len(images))])


def write_old_project(folder: Path, *, samples: int = 24, wrong_labels: int = 1, **overrides) -> Path:
    """An old-style ONNX model, ``val.npz`` (``samples`` images), ``calib.npz`` and a recipe.

    The labels are the model's own answers except the last ``wrong_labels``, so the baseline
    top-1 is exactly ``(samples - wrong_labels) / samples`` only if every sample was evaluated.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model = write_old_onnx(folder / "model.onnx")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(samples, *SHAPE[1:])).astype(np.float32)
    labels = reference_outputs(model, images).argmax(1)
    if wrong_labels:
        labels[-wrong_labels:] = (labels[-wrong_labels:] + 1) % CLASSES
    np.savez(folder / "val.npz", **{INPUT: images, "labels": labels})
    np.savez(folder / "calib.npz", **{INPUT: rng.normal(size=(16, *SHAPE[1:])).astype(np.float32)})
    recipe = {
        "name": "oldnet",
        "source": {"kind": "onnx", "path": "model.onnx"},
        "inputs": [{"name": INPUT, "dtype": "FP32", "shape": SHAPE}],
        "outputs": [{"name": OUTPUT}],
        "validation": {"dataset": {"kind": "npz", "path": "val.npz"}, "metric": "top1"},
        "budget": 0.05,
        "variants": [
            {"kind": "onnx-fp32"},
            {
                "kind": "onnx-int8-static",
                "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
            },
            {"kind": "onnx-fp16"},
        ],
        "profile": {"iterations": 5, "warmup": 1, "max_seconds_per_point": 0.2},
    }
    recipe.update(overrides)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
