"""Metrics against cases computed by hand."""

import numpy as np
import pytest

from attsf.evaluate import classification_metrics, regression_metrics


def test_classification_metrics_by_hand():
    # true: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    m = classification_metrics(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)  # WA
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    assert m["unweighted_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # UA
    # F1 per class: a: p=1, r=2/3 -> 0.8; b: p=1/2, r=1/2 -> 0.5; c: p=1/2, r=1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_mosi_metrics_by_hand():
    y = np.array([-2.6, -0.4, 0.0, 0.6, 1.8, 3.0])
    p = np.array([-1.4, 0.2, -0.2, 1.6, 1.2, 2.4])
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(np.mean([1.2, 0.6, 0.2, 1.0, 0.6, 0.6]))
    # has-0: true >= 0: F F T T T T ; pred >= 0: F T F T T T -> 4 of 6
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    # has-0 weighted F1: class F (support 2): p=1/2, r=1/2; class T (support 4): p=3/4, r=3/4
    assert m["f1_has0"] == pytest.approx((2 * 0.5 + 4 * 0.75) / 6)
    # non-0 drops the true 0: true > 0: F F T T T ; pred > 0: F T T T T -> 4 of 5
    assert m["acc2_non0"] == pytest.approx(4 / 5)
    # non-0 weighted F1: class F (support 2): p=1, r=1/2 -> 2/3; class T (support 3): p=3/4, r=1 -> 6/7
    assert m["f1_non0"] == pytest.approx((2 * 2 / 3 + 3 * 6 / 7) / 5)
    # acc-7: true -> -3 0 0 1 2 3 ; pred -> -1 0 0 2 1 2 -> 2 of 6
    assert m["acc7"] == pytest.approx(2 / 6)
    assert m["corr"] == pytest.approx(np.corrcoef(y, p)[0, 1], abs=1e-6)
