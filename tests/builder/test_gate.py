import pytest

from tritium.builder.gate import gate
from tritium.builder.metrics import Score
from tritium.builder.recipe import MetricName


def _pair(metric, baseline, value, budget):
    return Score(metric, baseline), Score(metric, value), budget


def test_within_budget_is_accepted():
    decision = gate([_pair(MetricName.TOP1, 0.98, 0.975, 0.01)])
    assert decision.accepted
    assert decision.checks[0].drop == pytest.approx(0.005)


def test_over_budget_is_rejected_with_reason():
    decision = gate([_pair(MetricName.COSINE, 1.0, 0.967, 0.01)])
    assert not decision.accepted
    assert "cosine 0.9670" in decision.reason and "OVER BUDGET" in decision.reason


def test_exactly_at_budget_passes():
    assert gate([_pair(MetricName.TOP1, 0.5, 0.49, 0.01)]).accepted


def test_improvement_is_negative_drop():
    assert gate([_pair(MetricName.TOP1, 0.9, 0.95, 0.0)]).checks[0].drop == pytest.approx(-0.05)


def test_lower_is_better_metric():
    assert gate([_pair(MetricName.MAX_ABS_ERROR, 0.0, 0.001, 0.01)]).accepted
    assert not gate([_pair(MetricName.MAX_ABS_ERROR, 0.0, 0.02, 0.01)]).accepted


def test_every_check_must_pass():
    decision = gate(
        [_pair(MetricName.COSINE, 1.0, 0.995, 0.01), _pair(MetricName.NEIGHBOR_TOP1, 0.95, 0.92, 0.02)]
    )
    assert not decision.accepted
    assert "neighbor_top1" in decision.reason and "cosine" not in decision.reason


def test_mismatched_metrics_refused():
    with pytest.raises(ValueError):
        gate([(Score(MetricName.TOP1, 1), Score(MetricName.COSINE, 1), 0.1)])
