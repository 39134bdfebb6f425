"""Streaming prediction: equals one-shot prediction, keeps order and ids, every format."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A regression run trained once for the whole module."""
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("pred") / "exp"
    api.init(exp, "regression")
    out = api.train(exp, ["train.epochs=2"])
    return out.run_dir


def big_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    df = pd.DataFrame(rng.normal(50, 10, size=(n, 10)).round(3), columns=cols)
    df.insert(0, "patient_id", [f"P{i:07d}" for i in range(n)])  # string ids with leading zeros
    df["extra"] = rng.integers(0, 5, n)
    return df[["extra", "s6", "patient_id", *cols[:-1]]]  # columns in another order


def reference(run: Path, df: pd.DataFrame) -> np.ndarray:
    import keras

    model = keras.models.load_model(run / "model.keras")
    cols = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    return model.predict(df[cols].to_numpy("float32"), batch_size=4096, verbose=0)[:, 0]


def test_streaming_equals_one_shot_across_chunks(trained, tmp_path, cli, monkeypatch):
    from bigmodel_cli.inference import reader

    monkeypatch.setattr(reader, "BLOCK_BYTES", 64 << 10)  # many blocks
    df = big_frame(30_000)
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    r = cli(
        "predict",
        trained,
        "--input",
        src,
        "--output",
        out,
        "--batch-size",
        "777",
        "--columns",
        "extra",
    )
    assert r.code == 0, r.err
    got = pd.read_csv(out, dtype={"patient_id": str})
    assert list(got.columns) == ["patient_id", "extra", "prediction"]
    assert (
        got["patient_id"].tolist() == df["patient_id"].tolist()
    )  # order and ids, across block boundaries
    assert (got["extra"].to_numpy() == df["extra"].to_numpy()).all()
    np.testing.assert_allclose(
        got["prediction"].to_numpy(), reference(trained, df), rtol=1e-5, atol=1e-3
    )


@pytest.mark.parametrize(
    "in_ext,out_ext",
    [("tsv", "parquet"), ("parquet", "jsonl"), ("jsonl", "csv.gz"), ("csv.gz", "tsv")],
)
def test_formats(trained, tmp_path, cli, in_ext, out_ext):
    df = big_frame(2_000, seed=1)
    src = tmp_path / f"in.{in_ext}"
    if in_ext == "tsv":
        df.to_csv(src, sep="\t", index=False)
    elif in_ext == "parquet":
        df.to_parquet(src)
    elif in_ext == "jsonl":
        df.to_json(src, orient="records", lines=True)
    else:
        df.to_csv(src, index=False, compression="gzip")
    out = tmp_path / f"out.{out_ext}"
    r = cli("predict", trained, "--input", src, "--output", out)
    assert r.code == 0, r.err
    if out_ext == "parquet":
        got = pd.read_parquet(out)
    elif out_ext == "jsonl":
        got = pd.read_json(out, lines=True, dtype={"patient_id": str})
    elif out_ext == "csv.gz":
        with gzip.open(out, "rt") as f:
            got = pd.read_csv(f, dtype={"patient_id": str})
    else:
        got = pd.read_csv(out, sep="\t", dtype={"patient_id": str})
    assert got["patient_id"].astype(str).tolist() == df["patient_id"].tolist()
    np.testing.assert_allclose(
        got["prediction"].to_numpy(), reference(trained, df), rtol=1e-5, atol=1e-3
    )


def test_stdin_to_stdout(trained):
    df = big_frame(500, seed=2)
    r = run_process(
        "predict", trained, "--input", "-", "--output", "-", input=df.to_csv(index=False)
    )
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert lines[0] == "patient_id,prediction" and len(lines) == 501
    assert "Traceback" not in r.err


def test_glob_to_output_dir(trained, tmp_path, cli):
    for i in range(3):
        big_frame(100, seed=i).to_csv(tmp_path / f"part{i}.csv", index=False)
    r = cli(
        "predict",
        trained,
        "--input",
        str(tmp_path / "part*.csv"),
        "--output-dir",
        tmp_path / "preds",
        "--json",
    )
    assert r.code == 0, r.err
    docs = json.loads(r.out)
    assert [Path(d["output"]).name for d in docs] == [f"part{i}.predictions.csv" for i in range(3)]
    assert all(d["rows"] == 100 for d in docs)


@pytest.mark.parametrize(
    "bad_line,content", [(5003, "P1,2,3\n"), (12001, "1,2,P,x,4,5,6,7,8,9,10,11\n")]
)
def test_bad_row_mid_file_names_line_and_leaves_no_output(
    trained, tmp_path, cli, monkeypatch, bad_line, content
):
    from bigmodel_cli.inference import reader

    monkeypatch.setattr(reader, "BLOCK_BYTES", 64 << 10)
    df = big_frame(20_000, seed=3)
    text = df.to_csv(index=False).splitlines(keepends=True)
    text.insert(bad_line - 1, content)
    src = tmp_path / "bad.csv"
    src.write_text("".join(text))
    out = tmp_path / "out.csv"
    r = cli("predict", trained, "--input", src, "--output", out)
    assert r.code == 2 and f"line {bad_line}" in r.err and "Traceback" not in r.err, r.err
    assert not out.exists() and not list(tmp_path.glob(".out.csv*")), "partial output left behind"


def test_missing_feature_column_named(trained, tmp_path, cli):
    df = big_frame(10).drop(columns=["bmi"])
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    r = cli("predict", trained, "--input", src, "--output", tmp_path / "o.csv")
    assert r.code == 2 and "'bmi'" in r.err and "columns" in r.err


def test_missing_id_column_is_a_note_not_an_error(trained, tmp_path, cli):
    df = big_frame(50).drop(columns=["patient_id"])
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "o.csv"
    r = cli("predict", trained, "--input", src, "--output", out)
    assert r.code == 0 and "no id column 'patient_id'" in r.err
    assert list(pd.read_csv(out).columns) == ["prediction"] and len(pd.read_csv(out)) == 50


def test_existing_output_needs_force(trained, tmp_path, cli):
    src = tmp_path / "in.csv"
    big_frame(10).to_csv(src, index=False)
    out = tmp_path / "o.csv"
    out.write_text("precious\n")
    r = cli("predict", trained, "--input", src, "--output", out)
    assert r.code == 2 and "--force" in r.err and out.read_text() == "precious\n"
    r = cli("predict", trained, "--input", src, "--output", tmp_path / "nope" / "o.csv")
    assert r.code == 2 and "does not exist" in r.err


def test_classifier_probabilities(tmp_path, cli, make_exp):
    exp = make_exp("binary-classifier")
    assert cli("train", exp, "--set", "train.epochs=2").code == 0
    out = tmp_path / "p.csv"
    r = cli("predict", exp, "--input", exp / "data/test.csv", "--output", out, "--probabilities")
    assert r.code == 0, r.err
    got = pd.read_csv(out)
    assert list(got.columns) == ["sample_id", "prediction", "prob_benign", "prob_malignant"]
    assert set(got["prediction"]) <= {"benign", "malignant"}
    np.testing.assert_allclose(got["prob_benign"] + got["prob_malignant"], 1.0, atol=1e-5)
    assert ((got["prob_malignant"] > 0.5) == (got["prediction"] == "malignant")).all()


def test_onnx_engine_skips_tensorflow_and_matches_it(trained, tmp_path, cli):
    src = tmp_path / "in.csv"
    df = big_frame(5_000, seed=4)
    df.to_csv(src, index=False)
    assert (trained / "inference.onnx").is_file() and (trained / "inference.json").is_file()
    code = (
        "import sys; from bigmodel_cli.cli import main; "
        f"rc = main(['predict', {str(trained)!r}, '--input', {str(src)!r}, '--output', "
        f"{str(tmp_path / 'fast.csv')!r}, '--json']); "
        "print('TF' if 'tensorflow' in sys.modules else 'noTF', rc)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert p.stdout.strip().splitlines()[-1] == "noTF 0", p.stdout + p.stderr
    assert json.loads("\n".join(p.stdout.strip().splitlines()[:-1]))["engine"] == "onnxruntime"
    r = cli(
        "predict",
        trained,
        "--input",
        src,
        "--output",
        tmp_path / "slow.csv",
        "--engine",
        "tensorflow",
        "--json",
    )
    assert r.code == 0 and json.loads(r.out)["engine"] == "tensorflow"
    fast, slow = pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "slow.csv")
    assert fast["patient_id"].tolist() == slow["patient_id"].tolist()
    np.testing.assert_allclose(fast["prediction"], slow["prediction"], rtol=1e-5, atol=1e-3)


def test_stale_inference_copy_is_never_used(trained, tmp_path, cli):
    src = tmp_path / "in.csv"
    big_frame(20).to_csv(src, index=False)
    meta_path = trained / "inference.json"
    original = meta_path.read_text()
    try:
        meta = json.loads(original)
        meta["model_sha256"] = "0" * 64  # as if model.keras changed after the copy was made
        meta_path.write_text(json.dumps(meta))
        r = cli("predict", trained, "--input", src, "--output", tmp_path / "a.csv", "--json")
        assert r.code == 0 and json.loads(r.out)["engine"] == "tensorflow"
        r = cli(
            "predict",
            trained,
            "--input",
            src,
            "--output",
            tmp_path / "b.csv",
            "--engine",
            "onnxruntime",
        )
        assert r.code == 2 and "no inference.onnx made from its model.keras" in r.err
    finally:
        meta_path.write_text(original)


def test_progress_lines_without_a_terminal(trained, tmp_path, cli, monkeypatch):
    from bigmodel_cli.inference import reader
    from bigmodel_cli.ui import progress

    monkeypatch.setattr(reader, "BLOCK_BYTES", 32 << 10)
    monkeypatch.setattr(progress.PredictProgress, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(progress.PredictProgress, "PLAIN_EVERY_S", 0.0)
    src = tmp_path / "in.csv.gz"
    big_frame(20_000).to_csv(src, index=False, compression="gzip")
    r = cli("predict", trained, "--input", src, "--output", tmp_path / "o.csv")
    assert r.code == 0, r.err
    lines = [ln for ln in r.err.splitlines() if "rows/s" in ln and "%" in ln]
    assert len(lines) >= 2, r.err
    pcts = [int(ln.split("%")[0].split()[-1]) for ln in lines]
    assert pcts == sorted(pcts) and 0 < pcts[-1] <= 100  # position in the compressed file
