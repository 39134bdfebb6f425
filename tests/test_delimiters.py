"""Delimiters (issue 25, item 7): sniffed from the header and first rows, overridable, and said."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigmodel_cli.data.sources import one_column_hint, sniff_delimiter


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_sniff_each_delimiter(sep):
    df = pd.DataFrame(
        {"name": ["a b", "c; d", "e, f"], "x": [1.5, 2.0, 3.25], "y": ["p", "q", "r"]}
    )
    text = df.to_csv(sep=sep, index=False)
    assert sniff_delimiter(text) == sep


def test_sniff_keeps_the_default_when_nothing_splits_and_ignores_quoted_delimiters():
    assert (
        sniff_delimiter("text\nhello; world\nbye; now\n") == ","
    )  # one column with semicolons in it
    assert sniff_delimiter('a,b\n"x;y;z",1\n"u;v;w",2\n') == ","  # semicolons only inside quotes
    assert sniff_delimiter("a\tb\n1\t2\n", default="\t") == "\t"
    cut = "a;b;c\n" + "1;2;3\n" * 10 + "4;5"  # a sample cut inside its last line
    assert sniff_delimiter(cut) == ";"
    assert one_column_hint(["Age;Attrition;Income"]).startswith(
        "the header was read as one column that holds ';'"
    )
    assert one_column_hint(["a", "b"]) is None


def test_a_semicolon_table_trains_and_predicts(tmp_path, cli):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "Age": rng.integers(20, 60, 300),
            "Income": rng.normal(3000, 800, 300).round(2),
            "Dept": rng.choice(["R&D", "Sales"], 300),
        }
    )
    df["Attrition"] = np.where(df["Income"] + rng.normal(0, 300, 300) < 2800, "Yes", "No")
    df.to_csv(tmp_path / "hr.csv", sep=";", index=False, decimal=".")
    r = cli("init", tmp_path / "exp", "--data", tmp_path / "hr.csv", "--target", "Attrition")
    assert r.code == 0, r.err
    assert "semicolon-separated (';'" in r.err
    r = cli(
        "train",
        tmp_path / "exp",
        "--set",
        "train.epochs=1",
        "--set",
        "model.ensemble=1",
        "--set",
        "model.tree_members=0",
        "--set",
        "model.ensemble_weights=equal",
    )
    assert r.code == 0, r.err
    run = r.out.strip().splitlines()[-1]
    df.drop(columns="Attrition").head(20).to_csv(
        tmp_path / "new.csv", sep="|", index=False
    )  # another file, another delimiter
    r = cli("predict", run, "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    assert r.code == 0, r.err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 20
    # forcing the wrong delimiter says what happened
    r = cli("train", tmp_path / "exp", "--set", "data.delimiter=,", "--set", "train.epochs=1")
    assert r.code == 2 and "read as one column that holds ';'" in r.err, r.err


def test_predict_renames_columns_and_runs_sorts_by_its_header(tmp_path, cli):
    """Issue 25, items 9-11: --rename FROM=TO in every input format; runs --sort
    takes what the header shows; printed paths are normalised."""
    import json

    assert cli("init", tmp_path / "exp", "--template", "regression").code == 0
    r = cli("train", tmp_path / "exp", "--set", "train.epochs=1")
    assert r.code == 0, r.err
    run = r.out.strip().splitlines()[-1]
    df = pd.read_csv(tmp_path / "exp" / "data" / "train.csv").head(30)
    ref = tmp_path / "ref.csv"
    assert (
        cli(
            "predict", run, "--input", tmp_path / "exp" / "data" / "train.csv", "--output", ref
        ).code
        == 0
    )
    other = df.drop(columns=["progression"], errors="ignore").rename(
        columns={"bmi": "body_mass_index", "age": "Age"}
    )
    for ext in ("csv", "parquet", "jsonl"):
        f = tmp_path / f"other.{ext}"
        if ext == "csv":
            other.to_csv(f, index=False)
        elif ext == "parquet":
            other.to_parquet(f)
        else:
            other.to_json(f, orient="records", lines=True)
        r = cli(
            "predict",
            run,
            "--input",
            f,
            "--output",
            tmp_path / f"p.{ext}.csv",
            "--rename",
            "body_mass_index=bmi",
            "--rename",
            "Age=age",
        )
        assert r.code == 0, (ext, r.err)
        np.testing.assert_allclose(
            pd.read_csv(tmp_path / f"p.{ext}.csv")["prediction"],
            pd.read_csv(ref)["prediction"].head(30),
            rtol=1e-5,
        )
    f = tmp_path / "other.csv"
    r = cli(
        "predict",
        run,
        "--input",
        f,
        "--output",
        tmp_path / "x.csv",
        "--rename",
        "body_mass_index=bmii",
        "--rename",
        "Age=age",
    )
    assert (
        r.code == 2
        and "the model reads no column 'bmii'" in r.err
        and "did you mean 'bmi'" in r.err
    )
    r = cli("predict", run, "--input", f, "--output", tmp_path / "x.csv", "--rename", "weight=bmi")
    assert r.code == 2 and "has no column 'weight'" in r.err
    r = cli("predict", run, "--input", f, "--output", tmp_path / "x.csv", "--rename", "bmi")
    assert r.code == 2 and "FROM=TO" in r.err
    assert cli("eval", run).code == 0
    for key in ("test mse", "test_mse", "mse", "best val_loss", "time"):
        r = cli("runs", tmp_path / "exp", "--sort", key, "--json")
        assert r.code == 0, (key, r.err)
    # a data path with .. in it is printed without it
    (tmp_path / "exp" / "so").mkdir()
    r = cli("eval", run, "--json")
    from bigmodel_cli.data.sources import resolve_path

    assert ".." not in str(resolve_path("../data/train.csv", tmp_path / "exp" / "so"))
    assert json.loads(r.out)["rows"] > 0
