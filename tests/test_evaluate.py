"""Metrics against hand-computed values."""

import numpy as np
import pytest

from bigmodel_cli.model.metrics import binary_metrics, classification_metrics, regression_metrics, roc_auc


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


def test_confusion_matrix_labels_do_not_overlap():
    """Long class names (penguin species) are rotated and sized so no two x labels overlap."""
    import matplotlib.pyplot as plt

    from bigmodel_cli.model.metrics import confusion_figure

    for classes in (["Adelie", "Chinstrap", "Gentoo"], ["Adelie Penguin (Pygoscelis adeliae)", "Chinstrap penguin", "Gentoo penguin", "Emperor penguin"], [f"class number {i}" for i in range(12)]):
        k = len(classes)
        fig = confusion_figure([[1] * k for _ in range(k)], classes)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        labels = ax.get_xticklabels()
        boxes = [t.get_window_extent(renderer) for t in labels]
        angle = labels[0].get_rotation()
        if angle == 0:
            for a, b in zip(boxes, boxes[1:]):
                assert a.x1 <= b.x0, classes
        else:  # parallel rotated lines: the gap between neighbours must exceed a line's height
            import math

            ticks = ax.transData.transform([(j, 0) for j in range(k)])[:, 0]
            height = labels[0].get_fontsize() * fig.dpi / 72
            assert min(ticks[1:] - ticks[:-1]) * math.sin(math.radians(angle)) > height, classes
        fig_box = fig.bbox
        for t in ax.get_xticklabels() + ax.get_yticklabels():
            bb = t.get_window_extent(renderer)
            assert bb.x0 >= fig_box.x0 - 1 and bb.y0 >= fig_box.y0 - 1, (classes, t.get_text())  # inside the picture
        plt.close(fig)
