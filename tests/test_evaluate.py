"""Metrics against hand-computed values."""

import numpy as np
import pytest

from bigmodel_cli.evaluate import binary_metrics, classification_metrics, regression_metrics, roc_auc


def test_roc_auc_with_ties_matches_pair_counting():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300) / 10.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, s) == pytest.approx(pairs)


def test_binary():
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), ["no", "yes"])
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5 and m["roc_auc"] == 0.75
    assert m["confusion_matrix"] == [[1, 1], [1, 1]] and m["positive_class"] == "yes"


def test_classification():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    m = classification_metrics(np.array([0, 1, 2, 1]), probs, ["a", "b", "c"])
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    b = m["per_class"][1]
    assert (b["precision"], b["recall"], b["support"]) == (1.0, 0.5, 2)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.7, 0.3])))


def test_regression():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]), "mse")
    assert m["mse"] == pytest.approx(4 / 3) and m["mae"] == pytest.approx(2 / 3) and m["r2"] == pytest.approx(1 - 4 / 2)
