"""Fuzzing the input surfaces (Hypothesis): configs and --set values, predict's rows in
CSV / JSON lines / Parquet, and serve's JSON and CSV bodies. Whatever comes in, the
answer is a result or one clear line (exit 2, HTTP 4xx), never an internal error (exit 1,
HTTP 500). ``make test`` runs a fast budget, ``make test-slow`` a big one
(BIGMODEL_FUZZ sets it); each test prints how many cases it ran."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = int(os.environ.get("BIGMODEL_FUZZ", "40"))
SLOW = int(os.environ.get("BIGMODEL_FUZZ_SLOW", "400"))
COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck))
CASES: dict[str, int] = {}


def counted(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    for name, n in sorted(CASES.items()):
        print(f"\nfuzz cases run: {name} {n}")


def config_keys() -> list[str]:
    """Every dotted key of the schema, and a few that are not."""
    from pydantic import BaseModel

    from bigmodel_cli.config.experiment import ExperimentConfig

    out: list[str] = []

    def walk(model: type, prefix: str) -> None:
        for name, f in model.model_fields.items():
            out.append(prefix + name)
            ann = f.annotation
            for cand in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(cand, type) and issubclass(cand, BaseModel):
                    walk(cand, prefix + name + ".")

    walk(ExperimentConfig, "")
    return out + [
        "train.epohcs",
        "data.colums.x",
        "model.layers.0",
        "nope",
        "data.text.ngrams.deep",
        "tune.space.train.learning_rate",
    ]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "auto",
            "true",
            "null",
            "10m",
            "0",
            "-1",
            "1e309",
            "nan",
            "[1, 2",
            "{a: ",
            "'",
            "mlp",
            "date_dmy",
            "[]",
            "{}",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    from bigmodel_cli import api

    folder = tmp_path_factory.mktemp("fuzz") / "exp"
    api.init(folder, "binary-classifier")
    return folder


def _config_case(exp: Path, cli, key: str, value, via_set: bool, raw: str | None) -> None:
    f = exp / "experiment.yaml"
    original = f.read_text()
    try:
        if raw is not None:
            f.write_text(raw)
            r = cli("train", exp, "--print-config")
        elif via_set:
            text = (
                value
                if isinstance(value, str)
                else yaml.safe_dump(value, default_flow_style=True)
                .strip()
                .removesuffix("...")
                .strip()
            )
            r = cli("train", exp, "--print-config", "--set", f"{key}={text}")
        else:
            doc = yaml.safe_load(original)
            cur = doc
            parts = key.split(".")
            for p in parts[:-1]:
                nxt = cur.get(p) if isinstance(cur, dict) else None
                if not isinstance(nxt, dict):
                    nxt = {}
                    cur[p] = nxt
                cur = nxt
            cur[parts[-1]] = value
            f.write_text(yaml.safe_dump(doc, allow_unicode=True))
            r = cli("train", exp, "--print-config")
    finally:
        f.write_text(original)
    assert r.code in (0, 2), (key, value, via_set, raw, r.err[-2000:])
    counted(f"config exit {r.code}")
    if r.code == 2:
        assert "Traceback" not in r.err and (r.err.startswith("error: ") or "\nerror: " in r.err), (
            r.err
        )


def _config_test(exp, cli, data):
    keys = config_keys()
    kind = data.draw(st.sampled_from(["file", "set", "raw"]))
    raw = data.draw(st.text(max_size=200)) if kind == "raw" else None
    key = data.draw(st.sampled_from(keys))
    value = data.draw(VALUES)
    counted("config")
    _config_case(exp, cli, key, value, kind == "set", raw)


@settings(max_examples=FAST, **COMMON)
@given(data=st.data())
def test_fuzz_configs_and_set_values(exp, cli, data):
    _config_test(exp, cli, data)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(data=st.data())
def test_fuzz_configs_and_set_values_many(exp, cli, data):
    _config_test(exp, cli, data)


# ---------------------------------------------------------------- predict rows


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A run over a number, a category, a date, a yes/no and a
    text column (init --data defaults)."""
    from bigmodel_cli.cli import main

    tmp = tmp_path_factory.mktemp("fuzzrun")
    rng = np.random.default_rng(0)
    n = 160
    d = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    df = pd.DataFrame(
        {
            "amount": rng.normal(100, 30, n).round(2),
            "city": rng.choice([f"c{i}" for i in range(20)], n),
            "when": d.strftime("%Y-%m-%d"),
            "member": rng.choice(["yes", "no"], n),
            "note": [
                " ".join(rng.choice(["good", "bad", "slow", "fast", "late"], 5)) for _ in range(n)
            ],
        }
    )
    df["y"] = np.where(df.amount > 100, "up", "down")
    df.to_csv(tmp / "t.csv", index=False)
    assert main(["init", str(tmp / "exp"), "--data", str(tmp / "t.csv"), "--target", "y"]) == 0
    assert (
        main(["train", str(tmp / "exp"), "--set", "train.epochs=2", "--set", "model.ensemble=2"])
        == 0
    )
    return tmp, sorted((tmp / "exp" / "runs").iterdir())[-1]


CELLS = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(
        [
            "",
            " ",
            "NA",
            "null",
            "2024-02-30",
            "2024-02-29",
            "31/12/2023",
            "1e309",
            "-0",
            "\n",
            '"',
            ",",
            "é",
            "東京",
            "\x00",
            "[1, 2]",
            "yes",
            "Y",
        ]
    ),
)
COLUMNS = ["amount", "city", "when", "member", "note", "extra"]


@st.composite
def tables(draw):
    cols = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=8, unique=True))
    if draw(st.booleans()):
        cols = list(
            dict.fromkeys(["amount", "city", "when", "member", "note", *cols])
        )  # mostly a complete header
    rows = draw(
        st.lists(st.lists(CELLS, min_size=len(cols), max_size=len(cols)), min_size=0, max_size=6)
    )
    return cols, rows


def _write(fmt: str, cols, rows, path: Path) -> None:
    if fmt == "csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8", errors="surrogatepass") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows([["" if v is None else v for v in r] for r in rows])
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(dict(zip(cols, r)), default=str) + "\n")
    else:
        df = (
            pd.DataFrame(rows, columns=cols)
            .astype(object)
            .map(lambda v: None if v is None else str(v))
        )
        df.to_parquet(path) if cols else path.write_bytes(b"PAR1junk")


def _predict_test(mixed_run, cli, data):
    tmp, run = mixed_run
    cols, rows = data.draw(tables())
    fmt = data.draw(st.sampled_from(["csv", "jsonl", "parquet"]))
    engine = data.draw(st.sampled_from(["auto", "tensorflow"]))
    bad = data.draw(st.sampled_from(["error", "missing"]))
    path = tmp / f"in.{fmt}"
    try:
        _write(fmt, cols, rows, path)
    except (UnicodeEncodeError, ValueError):  # a cell no file of that format can hold
        return
    counted("predict")
    r = cli(
        "predict",
        run,
        "--input",
        path,
        "--output",
        tmp / "out.csv",
        "--force",
        "--engine",
        engine,
        "--on-bad-value",
        bad,
    )
    assert r.code in (0, 2), (fmt, cols, rows, r.err[-2000:])
    counted(f"predict exit {r.code}")
    if r.code == 0:
        out = pd.read_csv(tmp / "out.csv") if (tmp / "out.csv").stat().st_size else pd.DataFrame()
        assert len(out) == len(rows), (len(out), len(rows))


@settings(max_examples=FAST // 2, **COMMON)
@given(data=st.data())
def test_fuzz_predict_rows(mixed_run, cli, data):
    _predict_test(mixed_run, cli, data)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(data=st.data())
def test_fuzz_predict_rows_many(mixed_run, cli, data):
    _predict_test(mixed_run, cli, data)


# ---------------------------------------------------------------- serve bodies

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False),
        st.text(max_size=15),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
ROW = st.dictionaries(
    st.sampled_from(COLUMNS),
    st.one_of(CELLS.filter(lambda v: not (isinstance(v, float) and not np.isfinite(v))), JSON),
    max_size=7,
)


@pytest.fixture(scope="module")
def client(mixed_run):
    from fastapi.testclient import TestClient

    from bigmodel_cli.inference.serve import make_app
    from bigmodel_cli.inference.service import Service

    with TestClient(make_app(Service.open(mixed_run[1]))) as c:
        yield c


def _serve_test(client, data):
    kind = data.draw(st.sampled_from(["rows", "json", "csv", "bytes"]))
    headers = (
        {"Content-Type": "text/csv"} if kind == "csv" else {"Content-Type": "application/json"}
    )
    if kind == "rows":
        body = json.dumps({"rows": data.draw(st.lists(ROW, max_size=5))}).encode()
    elif kind == "json":
        body = json.dumps(data.draw(JSON)).encode()
    elif kind == "csv":
        cols, rows = data.draw(tables())
        buf = io.StringIO()
        import csv

        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows([["" if v is None else v for v in r] for r in rows])
        body = buf.getvalue().encode("utf-8", "surrogatepass")
    else:
        body = data.draw(st.binary(max_size=300))
    query = data.draw(st.sampled_from(["", "?probabilities=true", "?probabilities=maybe"]))
    counted("serve")
    r = client.post("/predict" + query, content=body, headers=headers)
    assert r.status_code < 500, (kind, body[:300], r.status_code, r.text[:500])
    counted(f"serve HTTP {r.status_code}")


@settings(max_examples=FAST * 2, **COMMON)
@given(data=st.data())
def test_fuzz_serve_bodies(client, data):
    _serve_test(client, data)


@pytest.mark.slow
@settings(max_examples=SLOW * 2, **COMMON)
@given(data=st.data())
def test_fuzz_serve_bodies_many(client, data):
    _serve_test(client, data)
