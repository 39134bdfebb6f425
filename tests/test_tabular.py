"""Your own table: `init --data` inference, categories and missing values inside the model."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bigmodel_cli.features.category import CategoryEncoder, canonical


def _tricky(path: Path, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],  # an id
            "account": [
                f"AC-{i * 7919 % 100_003:06d}" for i in range(n)
            ],  # a key, not named like one
            "row": np.arange(1, n + 1),  # a row number
            "zip_code": rng.choice(
                [2134, 10001, 94105, 60601, 73301], n
            ),  # integers that are codes
            "store_type": rng.integers(1, 6, n),  # 5 integer codes
            "age": rng.integers(18, 90, n),  # a real amount
            "income": rng.normal(50_000, 15_000, n)
            .round(2)
            .astype(object),  # numbers, a few stray strings
            "plan": rng.choice(["basic", "plus", "premium"], n),  # a category
            "member": rng.choice(["yes", "no", "Yes", "NO"], n),  # booleans in several spellings
            "comment": [
                " ".join(
                    rng.choice(
                        [
                            "great",
                            "service",
                            "slow",
                            "delivery",
                            "would",
                            "buy",
                            "again",
                            "never",
                            "price",
                        ],
                        6,
                    )
                )
                + f" #{i}"
                for i in range(n)
            ],
            "country": ["FR"] * n,  # constant
            "fax": [np.nan] * (n - 5) + ["555-0100"] * 5,  # almost always missing
        }
    )
    df.loc[[3, 50], "income"] = ["n/a?", "unknown"]
    df.loc[[7, 9, 11], "age"] = np.nan
    df.loc[[13, 14], "plan"] = np.nan
    score = (
        (df.plan == "premium") * 2
        + (df.member.str.lower() == "yes")
        + (pd.to_numeric(df.income, errors="coerce").fillna(50_000) > 55_000)
    )
    df["churn"] = np.where(score >= 2, "stays", "leaves")
    df.loc[[20, 21, 22, 23], "churn"] = np.nan  # no target
    df.to_csv(path, index=False)
    return df


def test_inference_on_tricky_columns(tmp_path):
    from bigmodel_cli.data.profile import profile_table

    _tricky(tmp_path / "t.csv")
    p = profile_table(tmp_path / "t.csv", "churn")
    roles = {c.name: c.role for c in p.columns}
    assert p.task == "binary" and p.target_missing == 4
    assert roles == {
        "churn": "target",
        "customer_id": "id",
        "account": "id",
        "row": "id",
        "zip_code": "category",
        "store_type": "category",
        "age": "number",
        "income": "number",
        "plan": "category",
        "member": "category",
        "comment": "text",
        "country": "drop",
        "fax": "drop",
    }
    why = {c.name: c.why for c in p.columns}
    assert "stray" in why["income"] and "constant" in why["country"] and "missing" in why["fax"]


def test_a_year_column_reads_as_written(tmp_path):
    """Years (and four-digit numbers) are said as they are written: 1903 to 2015, not
    1,903 to 2,015; five digits and more are grouped."""
    from bigmodel_cli.data.profile import profile_table

    rng = np.random.default_rng(0)
    n = 400
    pd.DataFrame(
        {
            "year_built": rng.integers(1903, 2016, n),
            "price": rng.integers(40_000, 900_000, n),
            "sold": rng.choice(["yes", "no"], n),
        }
    ).to_csv(tmp_path / "h.csv", index=False)
    why = {c.name: c.why for c in profile_table(tmp_path / "h.csv", "sold").columns}
    built = int(pd.read_csv(tmp_path / "h.csv").year_built.min())
    assert f"from {built} to 2015" in why["year_built"], why
    from bigmodel_cli.data.profile import _int_range

    assert _int_range(pd.Series([10_001, 94_105, 2134])) == "2134 to 94,105"


def test_target_did_you_mean_ranks_the_columns_that_could_be_one(tmp_path):
    """--target 'price' (absent): 'price_id' is closer by spelling but an id; the hint names
    'sale_price', a column a model could learn; with no such candidate, the closest one."""
    from bigmodel_cli.data.profile import profile_table
    from bigmodel_cli.errors import DataError

    rng = np.random.default_rng(1)
    n = 200
    df = pd.DataFrame(
        {
            "price_id": [f"P{i:05d}" for i in range(n)],
            "sale_price": rng.normal(300, 50, n).round(2),
            "rooms": rng.integers(1, 6, n),
        }
    )
    df.to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(DataError) as e:
        profile_table(tmp_path / "h.csv", "price")
    assert "did you mean 'sale_price'" in e.value.hint, e.value.hint
    df[["price_id", "rooms"]].to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(DataError) as e:
        profile_table(tmp_path / "ids.csv", "price")
    assert "did you mean 'price_id'" in e.value.hint, e.value.hint


def test_task_inference(tmp_path):
    from bigmodel_cli.data.profile import profile_table

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    pd.DataFrame(
        {
            "x": x,
            "price": x * 3.3 + 100,
            "grade": rng.integers(0, 5, 200),
            "ok": rng.choice([True, False], 200),
        }
    ).to_csv(tmp_path / "a.csv", index=False)
    assert profile_table(tmp_path / "a.csv", "price").task == "regression"
    assert profile_table(tmp_path / "a.csv", "grade").task == "classification"
    assert profile_table(tmp_path / "a.csv", "ok").task == "binary"
    assert profile_table(tmp_path / "a.csv", "grade", "regression").task == "regression"


def test_canonical_keys_and_the_keras_lookup_agree():
    from bigmodel_cli.features.category import layers
    from bigmodel_cli.training.strategy import import_tensorflow

    tf = import_tensorflow()
    assert [
        canonical(v)
        for v in [7, 7.0, "07", " +7 ", "7.00", "-0", "0", "", "NA", None, float("nan"), "x y"]
    ] == ["7", "7", "7", "7", "7", "0", "0", None, None, None, None, "x y"]
    assert [canonical(v, True) for v in ["Yes", "NO", "t", "F", "1", "0", "on", True]] == [
        "true",
        "false",
        "true",
        "false",
        "true",
        "false",
        "true",
        "true",
    ]
    CategoryLookup, _ = layers()
    for values, boolean in (
        (["Biscoe", "Dream", " Dream", "07", "7", 7.0, "nan", "", "Torgersen", "ß", "東京"], False),
        (["yes", "No", "Y", "false", "maybe", "", "TRUE"], True),
    ):
        enc = CategoryEncoder.fit(values[:6], boolean=boolean)
        raw = ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
        np.testing.assert_array_equal(
            enc.ids(values), CategoryLookup(enc.vocabulary, enc.boolean)(tf.constant(raw)).numpy()
        )
    enc = CategoryEncoder.fit(["a", "b", "a", None])
    assert enc.ids(["a", "b", "c", None, ""]).ravel().tolist() == [
        2,
        3,
        1,
        0,
        0,
    ]  # unseen 1, missing 0


def test_init_train_eval_predict_mixed_table(tmp_path, cli):
    _tricky(tmp_path / "customers.csv")
    exp = tmp_path / "churn"
    r = cli("init", exp, "--data", tmp_path / "customers.csv", "--target", "churn", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert (
        doc["task"] == "binary"
        and {c["name"]: c["role"] for c in doc["columns"]}["zip_code"] == "category"
    )
    assert not (exp / "data").exists()  # referenced, not copied
    r = cli("train", exp, "--set", "train.epochs=15")
    assert r.code == 0, r.err
    assert "4 row(s)" in r.err and "no 'churn'" in r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert (run / "inference.onnx").is_file(), r.err
    r = cli("eval", run, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["accuracy"] > 0.8

    new = tmp_path / "new.csv"
    with open(new, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "customer_id",
                "comment",
                "plan",
                "member",
                "zip_code",
                "store_type",
                "age",
                "income",
                "row",
                "brand_new_column",
            ]
        )
        w.writerow(
            ["N1", "great service", "platinum", "maybe", "99999", "9", "", "n/a", "1", "x"]
        )  # unseen values, missing cells
        w.writerow(["N2", "", "premium", "YES", "02134", "2", "40", "90000", "2", "y"])
        w.writerow(["N3", "slow delivery", "", "", "", "", "", "", "3", "z"])  # nearly empty
    outs = []
    for engine in ("onnxruntime", "tensorflow"):
        out = tmp_path / f"{engine}.csv"
        r = cli(
            "predict", run, "--input", new, "--output", out, "--probabilities", "--engine", engine
        )
        assert r.code == 0, (engine, r.err)
        outs.append(list(csv.DictReader(open(out))))
    assert [o["customer_id"] for o in outs[0]] == ["N1", "N2", "N3"]
    assert all(o["prediction"] in ("leaves", "stays") for o in outs[0])
    assert max(abs(float(a["prob_stays"]) - float(b["prob_stays"])) for a, b in zip(*outs)) < 1e-5

    for fmt in ("keras", "savedmodel", "onnx"):
        r = cli("export", run, "--format", fmt, "--json")
        assert r.code == 0, (fmt, r.err)
        assert json.loads(r.out)["parity_ok"], fmt


def test_init_data_copy_and_bad_input(tmp_path, cli):
    _tricky(tmp_path / "c.csv")
    r = cli("init", tmp_path / "e", "--data", tmp_path / "c.csv", "--target", "chrun")
    assert r.code == 2 and "did you mean 'churn'" in r.err and not (tmp_path / "e").exists()
    r = cli("init", tmp_path / "e", "--data", tmp_path / "nope.csv", "--target", "churn")
    assert r.code == 2 and "not a file" in r.err
    r = cli(
        "init",
        tmp_path / "e",
        "--data",
        tmp_path / "c.csv",
        "--target",
        "churn",
        "--task",
        "clasification",
    )
    assert r.code == 2 and "--task" in r.err
    r = cli("init", tmp_path / "e", "--data", tmp_path / "c.csv")
    assert r.code == 2 and "--target" in r.err
    r = cli("init", tmp_path / "e", "--template", "linear", "--target", "y")
    assert r.code == 2
    r = cli("init", tmp_path / "e", "--data", tmp_path / "c.csv", "--target", "churn", "--copy")
    assert r.code == 0, r.err
    assert (tmp_path / "e" / "data" / "c.csv").is_file() and "train: data/c.csv" in (
        tmp_path / "e" / "experiment.yaml"
    ).read_text()
    r = cli("init", tmp_path / "e", "--data", tmp_path / "c.csv", "--target", "churn")
    assert r.code == 2 and "--force" in r.err


def test_penguins_like_table_regression_target(tmp_path, cli):
    """Regression from a table with categories and gaps: the target in real units."""
    rng = np.random.default_rng(3)
    n = 240
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], n)
    flipper = rng.normal(200, 14, n)
    mass = flipper * 40 - 4000 + (species == "Gentoo") * 600 + rng.normal(0, 150, n)
    df = pd.DataFrame(
        {
            "species": species,
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "flipper_length_mm": flipper.round(1),
            "sex": rng.choice(["male", "female", None], n),
            "body_mass_g": mass.round(0),
        }
    )
    df.loc[rng.choice(n, 10, replace=False), "flipper_length_mm"] = np.nan
    df.to_csv(tmp_path / "p.csv", index=False)
    exp = tmp_path / "mass"
    assert cli("init", exp, "--data", tmp_path / "p.csv", "--target", "body_mass_g").code == 0
    r = cli("train", exp, "--set", "train.epochs=40")
    assert r.code == 0, r.err
    r = cli("eval", exp, "--json")
    assert r.code == 0 and json.loads(r.out)["r2"] > 0.5, r.out
