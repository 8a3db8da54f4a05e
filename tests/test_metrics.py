"""The paper's metric on hand-computed cases."""

import numpy as np
import pytest

from tao_keras import metrics


def test_max_f1_over_thresholds_by_hand():
    # thresholds: 0.8 -> P=1, R=1/2, F1=2/3; 0.4 -> P=1/2, R=1/2; 0.35 -> P=2/3, R=1, F1=0.8
    assert metrics.max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8)
    assert metrics.max_f1([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert metrics.max_f1([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(
        2 * 0.25 / 1.25
    )  # all positive
    assert np.isnan(metrics.max_f1([0, 0], [0.3, 0.6]))


def test_evaluate_three_classes_by_hand():
    labels = [0, 0, 1, 2, 2, 2]
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.3, 0.4, 0.3],
            [0.2, 0.5, 0.3],
            [0.1, 0.1, 0.8],
            [0.5, 0.1, 0.4],
            [0.2, 0.2, 0.6],
        ]
    )
    result = metrics.evaluate(labels, probabilities, ["A", "B", "C"])
    # A: 0.7 -> P=1,R=1/2 (2/3); 0.5 -> P=1/2,R=1/2; 0.3 -> P=2/3,R=1 -> 0.8 is the best
    # B: 0.5 -> TP (P=1, R=1) -> 1.0;  C: 0.4 -> P=1, R=1 -> 1.0
    assert result["f1"] == pytest.approx({"A": 0.8, "B": 1.0, "C": 1.0})
    assert result["mean_f1"] == pytest.approx(14 / 15)
    assert result["std_f1"] == pytest.approx(np.std([0.8, 1.0, 1.0]))
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert result["support"] == {"A": 2, "B": 1, "C": 3}
    assert result["accuracy"] == pytest.approx(4 / 6)


def test_absent_class_is_left_out_of_the_mean():
    result = metrics.evaluate(
        [0, 0, 1], [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0]], ["A", "B", "C"]
    )
    assert np.isnan(result["f1"]["C"]) and result["mean_f1"] == pytest.approx(1.0)
