"""A small CNN for scikit-learn's 8×8 digits, trained from scratch (seeded) in seconds.

`python examples/digits/digits_model.py` writes, under `examples/digits/artifacts/`:
`digits.pt` (state dict), `val.npz` (held-out test split: pixels + labels), `calib.npz`
(a slice of the training split, for static INT8 calibration) and `train.npz` (the training split,
for quantization-aware fine-tuning).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


def build(width: int = 32) -> DigitsCNN:
    """The recipe's model factory."""
    return DigitsCNN(width)


def load_splits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    return train_test_split(pixels, labels, test_size=0.2, random_state=seed, stratify=labels)


def train(out_dir: Path = ARTIFACTS, seed: int = 0, epochs: int = 30) -> float:
    """Train, save the artifacts, return the test accuracy."""
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_splits(seed)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=generator).split(64):
            optimizer.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "digits.pt")
    np.savez(out_dir / "val.npz", pixels=x_test, labels=y_test)
    np.savez(out_dir / "calib.npz", pixels=x_train[:512], labels=y_train[:512])
    np.savez(out_dir / "train.npz", pixels=x_train, labels=y_train)
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ARTIFACTS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    acc = train(args.out, args.seed, args.epochs)
    print(f"digits CNN test accuracy {acc:.4f} -> {args.out}")
