"""The table default's two kinds of member: MLPs and soft oblivious trees, weighted
on the validation split (greedy ensemble selection), with both sides of each switch:
equal vs validation weights, trees on the plain numbers vs the encoded ones."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import predict_on_both

from bigmodel_cli.errors import ConfigError


def test_select_members_finds_the_best_mix():
    from bigmodel_cli.model.ensemble import select_members

    # member 0 is right, member 1 wrong: all weight on 0
    assert select_members(lambda w: (1.0 - w[0]) ** 2, 2).tolist() == [1.0, 0.0]
    # the loss is lowest at an equal mix of members 1 and 2: greedy selection lands on it
    w = select_members(lambda w: (w[1] - 0.5) ** 2 + (w[2] - 0.5) ** 2 + w[0], 3, rounds=20)
    np.testing.assert_allclose(w, [0.0, 0.5, 0.5])
    assert select_members(lambda w: 0.0, 4).tolist() == [
        1.0,
        0.0,
        0.0,
        0.0,
    ]  # ties: the lowest index, on every process


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", "binary_crossentropy", "mse", "mae", "huber"]
)
def test_numpy_loss_matches_the_training_loss(loss):
    import tensorflow as tf

    from bigmodel_cli.config.experiment import ExperimentConfig
    from bigmodel_cli.training.objective import numpy_loss, per_example

    rng = np.random.default_rng(0)
    task = {
        "sparse_categorical_crossentropy": "classification",
        "binary_crossentropy": "binary",
    }.get(loss, "regression")
    cfg = ExperimentConfig.model_validate(
        {
            "name": "t",
            "task": task,
            "data": {"train": "x.csv", "target": "y"},
            "model": {"architecture": "mlp"},
            "train": {"loss": loss},
        }
    )
    if task == "classification":
        p, y = rng.dirichlet(np.ones(4), 50), rng.integers(0, 4, 50)
    elif task == "binary":
        p, y = rng.uniform(0.01, 0.99, (50, 1)), rng.integers(0, 2, 50)
    else:
        p, y = rng.normal(size=(50, 1)) * 3, rng.normal(size=50).astype(np.float32)
    loss_fn, _ = per_example(cfg)
    expect = loss_fn(tf.constant(y), tf.constant(p, tf.float32)).numpy()
    np.testing.assert_allclose(numpy_loss(loss, y)(p), expect, rtol=1e-4, atol=1e-5)


def test_tree_members_are_part_of_the_ensemble():
    from bigmodel_cli.config.experiment import ExperimentConfig
    from bigmodel_cli.model.ensemble import member_architectures

    base = {"name": "t", "task": "binary", "data": {"train": "x.csv", "target": "y"}}
    cfg = ExperimentConfig.model_validate(
        {**base, "model": {"architecture": "mlp", "ensemble": 3, "tree_members": 1}}
    )
    assert member_architectures(cfg) == ["mlp", "mlp", "trees"]
    with pytest.raises((ConfigError, ValueError), match="tree_members"):
        ExperimentConfig.model_validate(
            {**base, "model": {"architecture": "mlp", "ensemble": 2, "tree_members": 3}}
        )


@pytest.mark.parametrize("depth,outputs", [(6, 1), (3, 4)])
def test_trees_layer_weighs_leaves_as_the_product_of_its_path(depth, outputs):
    """The layer's log-space leaf weights (one matmul and one exp) give what the
    definition says: a leaf's weight is the product of p or 1 - p along its path, level
    d choosing bit d of the leaf's index."""
    from bigmodel_cli.model.architectures import _register_trees

    rng = np.random.default_rng(0)
    layer = _register_trees()(trees=5, depth=depth, outputs=outputs, seed=3, speed=2.0)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    layer.build((None, 4))
    for w in layer.weights:  # away from the initial values: a wrong bit order shows
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    v = 2.0
    sel = np.exp(layer.select.numpy() * v)
    mix = x @ (sel / sel.sum(axis=0))
    t = layer.log_temperature.numpy() * v
    right = 0.5 * (1 + np.tanh((mix - layer.threshold.numpy() * v) * np.exp(-t) / 2))  # sigmoid
    right = right.reshape(7, 5, depth)
    leaves = layer.leaves.numpy().reshape(5, 2**depth, outputs) * v
    expect = np.zeros((7, outputs))
    for leaf in range(2**depth):
        bits = [(leaf >> d) & 1 for d in range(depth)]
        weight = np.prod(
            [right[:, :, d] if b else 1 - right[:, :, d] for d, b in enumerate(bits)], 0
        )
        expect += (weight[:, :, None] * leaves[None, :, leaf, :]).mean(axis=1)
    np.testing.assert_allclose(np.asarray(layer(x)), expect, rtol=1e-4, atol=1e-5)


def _table(path: Path, n: int = 400, seed: int = 0) -> None:
    """Three classes from a threshold rule on a sum and a category: what trees are good at."""
    rng = np.random.default_rng(seed)
    a, b = rng.exponential(2.0, n).round(2), rng.normal(size=n).round(3)
    plan = rng.choice(["basic", "plus", "max"], n)
    y = np.where(
        (a + b > 2.5) & (plan != "max"), "churn", np.where(plan == "max", "upgrade", "stay")
    )
    df = pd.DataFrame({"a": a, "b": b, "plan": plan, "y": y})
    df.loc[rng.choice(n, 15, replace=False), "a"] = np.nan
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    "weights,encoding",
    [("validation", "piecewise"), pytest.param("equal", "standard", marks=pytest.mark.slow)],
)
def test_trees_member_trains_predicts_and_exports(tmp_path, cli, weights, encoding):
    _table(tmp_path / "t.csv")
    exp = tmp_path / "exp"
    assert cli("init", exp, "--data", tmp_path / "t.csv", "--target", "y").code == 0
    doc = (exp / "experiment.yaml").read_text()
    assert (
        "tree_members: 1" in doc and "ensemble_weights: validation" in doc
    )  # init --data's default
    r = cli(
        "train",
        exp,
        "--set",
        "train.epochs=3",
        "--set",
        "model.ensemble=2",
        "--set",
        "model.trees=8",
        "--set",
        "model.tree_depth=3",
        "--set",
        f"model.ensemble_weights={weights}",
        "--set",
        f"data.numeric_encoding={encoding}",
        "--json",
    )
    assert r.code == 0, r.err
    run = Path(json.loads(r.out)["run_dir"])
    graph = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))
    text = json.dumps(graph)
    assert "ObliviousTrees" in text
    # the trees member reads the numbers before the piecewise encoding, the MLP after it
    assert ("inputs_plain" in text) == (encoding == "piecewise")

    import keras

    from bigmodel_cli.model.inputs import core_of
    from bigmodel_cli.model.loading import register_layers

    register_layers()
    mean = core_of(keras.models.load_model(run / "model.keras", compile=False)).get_layer(
        "ensemble"
    )
    if weights == "validation":
        w = mean.member_weights.numpy()
        assert w.shape == (2,) and abs(float(w.sum()) - 1.0) < 1e-6 and (w >= 0).all()
    else:
        assert not mean.weighted

    new = tmp_path / "new.csv"
    pd.DataFrame(
        {"a": [0.5, "", 9.0], "b": [0.1, -1.0, 2.0], "plan": ["basic", "max", "unheard-of"]}
    ).to_csv(new, index=False)
    outs = predict_on_both(cli, run, new, tmp_path, "--probabilities")
    probs = [c for c in outs[0].columns if c.startswith("prob_")]
    assert len(probs) == 3 and len(outs[0]) == 3
    np.testing.assert_allclose(outs[0][probs], outs[1][probs], atol=1e-5)
    for fmt in ("savedmodel", "onnx") if weights == "validation" else ("onnx",):
        r = cli("export", run, "--format", fmt, "--json")
        assert r.code == 0, (fmt, r.err)
        assert json.loads(r.out)["parity_ok"], fmt
