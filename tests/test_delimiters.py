"""Delimiters (issue 25, item 7): sniffed from the header and first rows, overridable, and said."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigmodel_cli.data.sources import one_column_hint, sniff_delimiter


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_sniff_each_delimiter(sep):
    df = pd.DataFrame({"name": ["a b", "c; d", "e, f"], "x": [1.5, 2.0, 3.25], "y": ["p", "q", "r"]})
    text = df.to_csv(sep=sep, index=False)
    assert sniff_delimiter(text) == sep


def test_sniff_keeps_the_default_when_nothing_splits_and_ignores_quoted_delimiters():
    assert sniff_delimiter("text\nhello; world\nbye; now\n") == ","  # one column with semicolons in it
    assert sniff_delimiter('a,b\n"x;y;z",1\n"u;v;w",2\n') == ","  # semicolons only inside quotes
    assert sniff_delimiter("a\tb\n1\t2\n", default="\t") == "\t"
    cut = "a;b;c\n" + "1;2;3\n" * 10 + "4;5"  # a sample cut inside its last line
    assert sniff_delimiter(cut) == ";"
    assert one_column_hint(["Age;Attrition;Income"]).startswith("the header was read as one column that holds ';'")
    assert one_column_hint(["a", "b"]) is None


def test_a_semicolon_table_trains_and_predicts(tmp_path, cli):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"Age": rng.integers(20, 60, 300), "Income": rng.normal(3000, 800, 300).round(2), "Dept": rng.choice(["R&D", "Sales"], 300)})
    df["Attrition"] = np.where(df["Income"] + rng.normal(0, 300, 300) < 2800, "Yes", "No")
    df.to_csv(tmp_path / "hr.csv", sep=";", index=False, decimal=".")
    r = cli("init", tmp_path / "exp", "--data", tmp_path / "hr.csv", "--target", "Attrition")
    assert r.code == 0, r.err
    assert "semicolon-separated (';'" in r.err
    r = cli("train", tmp_path / "exp", "--set", "train.epochs=1", "--set", "model.ensemble=1", "--set", "model.tree_members=0", "--set", "model.ensemble_weights=equal")
    assert r.code == 0, r.err
    run = r.out.strip().splitlines()[-1]
    df.drop(columns="Attrition").head(20).to_csv(tmp_path / "new.csv", sep="|", index=False)  # another file, another delimiter
    r = cli("predict", run, "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    assert r.code == 0, r.err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 20
    # forcing the wrong delimiter says what happened
    r = cli("train", tmp_path / "exp", "--set", "data.delimiter=,", "--set", "train.epochs=1")
    assert r.code == 2 and "read as one column that holds ';'" in r.err, r.err
