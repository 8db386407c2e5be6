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

    def __init__(self, heads: int = 2) -> None:
        super().__init__()
        import transformers

        config = transformers.BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=heads,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        self.bert = transformers.BertModel(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


class OutlierMlp(nn.Module):
    """16-64-64-4 with one hidden unit 1000x larger (the next layer reads it 1000x smaller): the same
    function, but per-tensor INT8 of the middle layer spends its whole range on that unit, and the
    last layer's dynamic input quantization does the same. Keeping those in FP32 restores it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
        with torch.no_grad():
            self.net[2].weight[0] *= 1000
            self.net[2].bias[0] *= 1000
            self.net[4].weight[:, 0] /= 1000

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallMlp(nn.Module):
    """16-64-64-4, for quantization-aware training."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NoWeights(nn.Module):
    """Nothing a quantizer could make smaller."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * 2.0 - 1.0)[:, :4]


def outlier_mlp() -> OutlierMlp:
    torch.manual_seed(0)
    return OutlierMlp().eval()


def small_mlp() -> SmallMlp:
    torch.manual_seed(0)
    return SmallMlp().eval()


def no_weights() -> NoWeights:
    return NoWeights()


def var_args() -> VarArgs:
    torch.manual_seed(0)
    return VarArgs()


def tiny_bert(heads: int = 2) -> TinyBertEncoder:
    torch.manual_seed(0)
    return TinyBertEncoder(heads)


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


def write_outlier_project(folder: Path, **overrides) -> Path:
    """The outlier MLP (labels = its own argmax), 256 validation samples and a per-tensor dynamic INT8
    variant under accuracy control, scored on a quarter of the validation set held out from the gate."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    with torch.inference_mode():
        labels = outlier_mlp()(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(folder / "val.npz", x=x, labels=labels)
    recipe = {
        "name": "outlier",
        "source": {"kind": "pytorch", "factory": "tests.builder.tiny_models:outlier_mlp"},
        "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 16], "range": [-2, 2]}],
        "outputs": [{"name": "logits"}],
        "validation": {"dataset": {"kind": "npz", "path": "val.npz", "batch_size": 64}, "metric": "top1"},
        "budget": 0.03,
        "variants": [
            {"kind": "onnx-int8-dynamic", "per_channel": False, "objective": "none"},
            {
                "kind": "onnx-int8-dynamic",
                "per_channel": False,
                "objective": "none",
                "accuracy_control": {"max_excluded_nodes": 3},
            },
        ],
        "triton": {"max_batch_size": 8},
        "profile": {"iterations": 3, "warmup": 1, "max_seconds_per_point": 0.2},
    }
    recipe.update(overrides)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def blobs(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian classes in 16 dimensions (a trained model reaches ~0.9 accuracy, not 1.0)."""
    means = np.random.default_rng(42).normal(size=(4, 16))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, samples)
    return (means[labels] + rng.normal(size=(samples, 16))).astype(np.float32), labels


WIDE_UNITS, WIDE_FACTOR = 4, 200.0


def train_wide_mlp(path: Path) -> None:
    """Train SmallMlp on the blobs, then widen its first activation's range: 4 of its 64 units 200x
    larger, the next layer reading them 200x smaller (the same function in FP32). One per-tensor
    scale for that activation then leaves the other 60 units a few levels each."""
    x, labels = blobs(4096, 1)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(labels)
    model = small_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(30):
        for index in torch.randperm(len(inputs), generator=generator).split(128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[index]), targets[index]).backward()
            optimizer.step()
    with torch.no_grad():
        model.net[0].weight[:WIDE_UNITS] *= WIDE_FACTOR
        model.net[0].bias[:WIDE_UNITS] *= WIDE_FACTOR
        model.net[2].weight[:, :WIDE_UNITS] /= WIDE_FACTOR
    torch.save(model.state_dict(), path)


def write_qat_project(folder: Path, **overrides) -> Path:
    """A trained MLP with a wide activation range (see train_wide_mlp) and its data: static INT8
    calibrated on it loses more than the budget; quantization-aware training fine-tunes the weights
    to the coarse activation grid and stays within it (the same QAT without training does not)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_wide_mlp(folder / "wide.pt")
    for name, (samples, seed) in {"train": (4096, 1), "val": (1024, 2)}.items():
        x, labels = blobs(samples, seed)
        np.savez(folder / f"{name}.npz", x=x, labels=labels)
    np.savez(folder / "calib.npz", x=blobs(512, 3)[0])
    recipe = {
        "name": "wide",
        "source": {
            "kind": "pytorch",
            "factory": "tests.builder.tiny_models:small_mlp",
            "state_dict": "wide.pt",
        },
        "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 16], "range": [-3, 3]}],
        "outputs": [{"name": "logits"}],
        "validation": {"dataset": {"kind": "npz", "path": "val.npz", "batch_size": 256}, "metric": "top1"},
        "budget": 0.03,
        "variants": [
            {
                "kind": "onnx-int8-static",
                "objective": "none",
                "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
            },
            {"kind": "qat-int8", "objective": "none"},
            # the same fake quantization with (practically) no weight updates: what training adds
            {
                "kind": "qat-int8",
                "name": "qat-untrained",
                "objective": "none",
                "learning_rate": 1e-12,
                "epochs": 1,
            },
        ],
        "training": {
            "dataset": {"kind": "npz", "path": "train.npz"},
            "loss": "cross_entropy",
            "epochs": 4,
            "learning_rate": 0.003,
            "batch_size": 128,
            "seed": 0,
        },
        "triton": {"max_batch_size": 8},
        "profile": {"iterations": 3, "warmup": 1, "max_seconds_per_point": 0.2},
    }
    recipe.update(overrides)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def calibrate_only(model: nn.Module, batches: int = 1) -> None:
    """A training factory: the user's own loop (here it only runs a few batches to set the observers)."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(batches):
        model(torch.randn(32, 16, generator=generator))


class SmallCnn(nn.Module):
    """conv(1→w) → conv(w→2w) → pool → fc(2w·16→64) → fc(64→10): the digits CNN, narrower."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


def small_cnn(width: int = 16) -> SmallCnn:
    return SmallCnn(width)


def failing_student(width: int = 4) -> nn.Module:
    raise ValueError(f"no student of width {width}")


def write_cnn_project(folder: Path, **overrides) -> Path:
    """scikit-learn's digits, a small CNN trained on them in a few seconds (seeded), and a recipe
    with the pruning and distillation variants (train / calibration / validation splits apart)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_val, y_train, y_val = train_test_split(
        pixels, digits.target.astype(np.int64), test_size=0.2, random_state=0, stratify=digits.target
    )
    torch.manual_seed(0)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        for index in torch.randperm(len(xt), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[index]), yt[index]).backward()
            optimizer.step()
    torch.save(model.state_dict(), folder / "cnn.pt")
    np.savez(folder / "train.npz", pixels=x_train, labels=y_train)
    np.savez(folder / "val.npz", pixels=x_val, labels=y_val)
    np.savez(folder / "calib.npz", pixels=x_train[:256])
    recipe = {
        "name": "cnn",
        "source": {
            "kind": "pytorch",
            "factory": "tests.builder.tiny_models:small_cnn",
            "state_dict": "cnn.pt",
        },
        "inputs": [{"name": "pixels", "dtype": "FP32", "shape": ["batch", 1, 8, 8], "range": [0, 1]}],
        "outputs": [{"name": "logits"}],
        "validation": {"dataset": {"kind": "npz", "path": "val.npz", "batch_size": 128}, "metric": "top1"},
        "budget": 0.02,
        "variants": [
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "prune-unstructured", "sparsity": 0.9, "learning_rate": 0.001},
            {
                "kind": "onnx-int8-static",
                "parent": "prune-unstructured-90",
                "objective": "size",
                "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
            },
            {
                "kind": "prune-structured",
                "amount": 0.5,
                "epochs": 6,
                "learning_rate": 0.002,
                "objective": "none",
            },
            {
                "kind": "distill",
                "student": {"kwargs": {"width": 4}},
                "alpha": 0.5,
                "epochs": 12,
                "learning_rate": 0.005,
                "objective": "none",
            },
            {
                "kind": "distill",
                "name": "distill-few-labels",
                "student": {"kwargs": {"width": 4}},
                "labelled": 50,
                "epochs": 12,
                "learning_rate": 0.005,
                "objective": "none",
            },
        ],
        "training": {
            "dataset": {"kind": "npz", "path": "train.npz"},
            "loss": "cross_entropy",
            "epochs": 3,
            "learning_rate": 0.0001,
            "seed": 0,
        },
        "triton": {"max_batch_size": 16},
        "profile": {"batch_sizes": [1, 16], "iterations": 3, "warmup": 1, "max_seconds_per_point": 0.2},
        "performance": {"seconds": 0.1},
    }
    recipe.update(overrides)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
