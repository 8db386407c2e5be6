import numpy as np
import pytest

from tritium.builder.metrics import cosine, max_abs_error, neighbor_top1, score, top1
from tritium.builder.recipe import MetricName
from tritium.errors import DatasetError


def test_top1():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert top1(logits, np.array([1, 0, 0, 0])) == pytest.approx(0.75)


def test_cosine_identical_and_orthogonal():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, np.array([[0.0, 1.0], [3.0, 0.0]])) == pytest.approx(0.0)


def test_cosine_is_mean_over_samples():
    a = np.array([[1.0, 0.0], [1.0, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert cosine(a, b) == pytest.approx((1 + 2**-0.5) / 2)


def test_max_abs_error():
    assert max_abs_error(np.array([[1.0, 2.0]]), np.array([[1.5, 2.0]])) == pytest.approx(0.5)


def test_neighbor_top1_pairs():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert neighbor_top1(vectors, np.array([0, 0, 1, 1])) == 1.0
    assert neighbor_top1(vectors, np.array([0, 1, 0, 1])) == 0.0


def test_labels_required_for_top1():
    with pytest.raises(DatasetError, match="needs labels"):
        score(MetricName.TOP1, np.zeros((2, 3)), None, np.zeros((2, 3)))


def test_direction():
    assert score(MetricName.MAX_ABS_ERROR, np.ones((1, 2)), None, np.ones((1, 2))).higher_is_better is False
