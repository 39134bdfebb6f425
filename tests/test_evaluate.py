"""Metrics against hand-computed values."""

import numpy as np
import pytest

from bigmodel_cli.model.metrics import (
    binary_metrics,
    classification_metrics,
    regression_metrics,
    roc_auc,
)


def test_roc_auc_with_ties_matches_pair_counting():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300) / 10.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, s) == pytest.approx(pairs)


def test_binary():
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), ["no", "yes"])
    assert (
        m["accuracy"] == 0.5
        and m["precision"] == 0.5
        and m["recall"] == 0.5
        and m["roc_auc"] == 0.75
    )
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
    assert (
        m["mse"] == pytest.approx(4 / 3)
        and m["mae"] == pytest.approx(2 / 3)
        and m["r2"] == pytest.approx(1 - 4 / 2)
    )


def test_confusion_matrix_labels_do_not_overlap():
    """Long class names (penguin species) are rotated and sized so no two x labels overlap."""
    import matplotlib.pyplot as plt

    from bigmodel_cli.model.metrics import confusion_figure

    for classes in (
        ["Adelie", "Chinstrap", "Gentoo"],
        [
            "Adelie Penguin (Pygoscelis adeliae)",
            "Chinstrap penguin",
            "Gentoo penguin",
            "Emperor penguin",
        ],
        [f"class number {i}" for i in range(12)],
    ):
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
            assert bb.x0 >= fig_box.x0 - 1 and bb.y0 >= fig_box.y0 - 1, (
                classes,
                t.get_text(),
            )  # inside the picture
        plt.close(fig)


@pytest.mark.parametrize(
    "kind", ["table", pytest.param("text", marks=pytest.mark.slow)]
)  # text: make test-slow (the fast suite's time)
def test_eval_on_onnx_matches_tensorflow_without_importing_it(kind, tmp_path, cli):
    """Issue 25, item 5: eval runs on the ONNX fast path while it is current,
    with the same metrics as the Keras model; a bad --data path fails first."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from conftest import ROOT

    if kind == "table":
        rng = np.random.default_rng(1)
        df = pd.DataFrame(
            {
                "x": rng.normal(size=400),
                "city": rng.choice([f"c{i}" for i in range(30)], 400),
                "kind": rng.choice(["a", "b", None], 400),
            }
        )
        df["y"] = np.where(df.x + (df.city < "c15") > 0.5, "yes", "no")
        df.to_csv(tmp_path / "t.csv", index=False)
        assert (
            cli("init", tmp_path / "exp", "--data", tmp_path / "t.csv", "--target", "y").code == 0
        )
        sets = [
            "--set",
            "train.epochs=2",
            "--set",
            "model.ensemble=2",
            "--set",
            "model.tree_members=1",
        ]
    else:
        assert cli("init", tmp_path / "exp", "--template", "text-classifier").code == 0
        sets = ["--set", "train.epochs=1"]
    r = cli("train", tmp_path / "exp", *sets)
    assert r.code == 0, r.err
    run = r.out.strip().splitlines()[-1]
    tf = json.loads(cli("eval", run, "--engine", "tensorflow", "--json").out)
    code = (
        "import sys, json\nfrom bigmodel_cli.cli import main\nrc = main(['eval', sys.argv[1], "
        "'--json'])\nprint(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules}), "
        "file=sys.stderr)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, run], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    fast, flags = json.loads(p.stdout), json.loads(p.stderr.strip().splitlines()[-1])
    assert (
        flags == {"rc": 0, "tf": False}
        and fast["engine"] == "onnxruntime"
        and tf["engine"] == "tensorflow"
    )
    for k in ("accuracy", "loss", "ece"):
        assert fast[k] == pytest.approx(tf[k], abs=1e-5), k
    assert fast["confusion_matrix"] == tf["confusion_matrix"]
    r = cli("eval", run, "--data", tmp_path / "nope.csv")
    assert r.code == 2 and "nope.csv does not exist" in r.err
