"""Plots a reader can use (issue 25, item 6): whole-number epochs, the kept epoch, regression
evals.
"""

from __future__ import annotations

import numpy as np
import pytest


def test_history_plot_has_whole_epochs_and_marks_the_kept_one(tmp_path, monkeypatch):
    from bigmodel_cli.model import metrics as M

    plt = M._plt()
    captured = {}
    real = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: captured.setdefault("fig", fig))
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e + 0.01 * e} for e in (1, 2, 3)]
    assert M.plot_history(rows, tmp_path / "t.png", best_epoch=2).is_file()
    ax = captured["fig"].axes[0]
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no 2.5
    assert any(line.get_label() == "kept: epoch 2" for line in ax.get_lines())
    real(captured["fig"])


def test_regression_eval_draws_predicted_vs_actual_and_residuals(make_exp, cli):
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=2")
    assert r.code == 0, r.err
    r = cli("eval", exp)
    assert r.code == 0, r.err
    png = exp / "runs" / "regression-1" / "plots" / "regression.png"
    assert png.is_file() and png.stat().st_size > 10_000 and str(png) in r.err
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert (
        img.shape[1] > img.shape[0] * 2 and np.asarray(img).std() > 0.05
    )  # two panels side by side, not blank


@pytest.mark.parametrize("child", ["as shipped", "fails"])
def test_eval_plots_are_drawn_by_a_child_or_else_in_process(tmp_path, monkeypatch, child):
    """eval's plots: a child process imports matplotlib while the rows are scored and
    draws them at the end; a child that fails leaves them to the parent. Either way each
    file exists once finish() returns, and close() without finish() draws nothing."""
    from bigmodel_cli.model import drawing

    from bigmodel_cli.model import metrics

    if child == "fails":
        monkeypatch.setattr(drawing, "CHILD", "import sys; sys.exit(3)")
    else:  # the child draws: the parent's own function is never called

        def not_here(*a):
            raise AssertionError("drawn in the parent")

        monkeypatch.setattr(metrics, "plot_confusion", not_here)
    d = drawing.Drawer.start()
    out = d.draw("plot_confusion", [[3, 1], [0, 4]], ["no", "yes"], tmp_path / "cm.png")
    assert out == tmp_path / "cm.png" and not out.exists()
    d.finish()
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    d = drawing.Drawer.start()
    d.draw("plot_confusion", [[1]], ["a"], tmp_path / "never.png")
    d.close()
    assert not (tmp_path / "never.png").exists()
