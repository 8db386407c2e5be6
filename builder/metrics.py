"""Task metrics: pure functions of outputs, labels and the baseline's outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritium.builder.recipe import MetricName
from tritium.errors import DatasetError

HIGHER_IS_BETTER = {
    MetricName.TOP1: True,
    MetricName.COSINE: True,
    MetricName.NEIGHBOR_TOP1: True,
    MetricName.MAX_ABS_ERROR: False,
}
LABELLED_METRICS = frozenset({MetricName.TOP1, MetricName.NEIGHBOR_TOP1})  # scored against labels


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=-1) == labels.reshape(-1)))


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(len(array), -1).astype(np.float64)


def cosine(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine similarity of each sample's output to the reference output."""
    a, b = _rows(outputs), _rows(reference)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def max_abs_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(_rows(outputs) - _rows(reference))))


def neighbor_top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Retrieval check: share of samples whose most similar *other* sample has the same label."""
    vectors = _rows(outputs)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    labels = labels.reshape(-1)
    return float(np.mean(labels[np.argmax(similarity, axis=1)] == labels))


@dataclass(frozen=True)
class Score:
    metric: MetricName
    value: float

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]


def score(metric: MetricName, outputs: np.ndarray, labels: np.ndarray | None, reference: np.ndarray) -> Score:
    if metric in (MetricName.TOP1, MetricName.NEIGHBOR_TOP1):
        if labels is None:
            raise DatasetError(f"metric {metric.value!r} needs labels, the validation set has none")
        if len(labels) != len(outputs):
            raise DatasetError(f"metric {metric.value!r}: {len(labels)} labels for {len(outputs)} outputs")
        func = top1 if metric is MetricName.TOP1 else neighbor_top1
        return Score(metric, func(outputs, labels))
    if outputs.shape != reference.shape:
        raise DatasetError(
            f"metric {metric.value!r}: output shape {outputs.shape} != baseline {reference.shape}"
        )
    func = cosine if metric is MetricName.COSINE else max_abs_error
    return Score(metric, func(outputs, reference))
