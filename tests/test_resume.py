"""Crash safety: kill -9 at any moment, resume, and nothing is lost or repeated."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

CFG = ["train.epochs=8", "train.steps_per_execution=1", "train.checkpoint_every_steps=4"]


def _sets(items):
    out = []
    for o in items:
        out += ["--set", o]
    return out


def start_train(exp: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "bigmodel_cli", "train", str(exp), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def wait_for(pred, timeout=120.0):
    t = time.time()
    while time.time() - t < timeout:
        if pred():
            return True
        time.sleep(0.02)
    raise TimeoutError


def history(run: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
        for r in csv.DictReader(open(run / "history.csv"))
    ]


def weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(path, compile=False).get_weights()]


def assert_same_weights(a: Path, b: Path, rtol: float = 0.0, atol: float = 1e-6) -> None:
    """Two saved models hold the same weights: as many arrays (at least one), each the
    same shape and values within the tolerance (a bare zip would pass on an empty list)."""
    wa, wb = weights(a), weights(b)
    assert wa and len(wa) == len(wb), (len(wa), len(wb))
    for x, y in zip(wa, wb, strict=True):
        assert x.shape == y.shape, (x.shape, y.shape)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def all_files_load(run: Path, temp_allowed: bool = False) -> None:
    """Every file under its final name loads; after a resume no temporary file is left.

    Right after a kill, a half-written temporary file may exist (the final name
    is untouched): temp_allowed skips those."""
    import json

    import keras
    import yaml

    from bigmodel_cli.runs import _TEMP_RE

    for p in run.rglob("*"):
        if temp_allowed and _TEMP_RE.match(p.name):
            continue
        if p.suffix == ".keras":
            keras.models.load_model(p, compile=False)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".yaml":
            yaml.safe_load(p.read_text())
        elif p.suffix == ".csv":
            list(csv.DictReader(open(p)))
    if not temp_allowed:
        assert not [p for p in run.rglob(".*")], "temporary files left in the run folder"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with the same seed and config."""
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("ref") / "exp"
    api.init(exp, "regression")
    out = api.train(exp, CFG)
    return out.run_dir


def run_folder(exp: Path) -> Path:
    runs = list((exp / "runs").glob("regression-*"))
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize(
    "when", ["after-epoch", pytest.param("mid-epoch", marks=pytest.mark.slow)]
)  # mid-epoch in make test: test_streaming's kill -9
def test_kill9_then_resume_matches_uninterrupted(when, reference, make_exp, cli):
    exp = make_exp("regression")
    p = start_train(exp, *_sets(CFG))
    if when == "after-epoch":
        wait_for(
            lambda: (
                (exp / "runs").exists()
                and any(
                    (r / "history.csv").exists() and len(history(r)) >= 2
                    for r in (exp / "runs").iterdir()
                )
            )
        )
    else:
        wait_for(
            lambda: (
                (exp / "runs").exists()
                and any((r / "checkpoints/last.keras").exists() for r in (exp / "runs").iterdir())
            )
        )
        time.sleep(random.uniform(0.05, 0.6))
    p.send_signal(signal.SIGKILL)
    p.wait()
    run = run_folder(exp)
    all_files_load(run, temp_allowed=True)
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    h = history(run)
    assert [int(x["epoch"]) for x in h] == list(range(1, 9))  # each epoch exactly once
    assert h == history(reference)
    assert_same_weights(run / "model.keras", reference / "model.keras", rtol=0, atol=1e-6)
    all_files_load(run)
    import json

    sessions = json.loads((run / "meta.json").read_text())["sessions"]
    assert (
        len(sessions) == 2
        and sessions[0]["status"] == "running"
        and sessions[1]["status"] == "completed"
        and sessions[1]["resumed"]
    )


def test_resume_finished_changes_nothing_then_extends(make_exp, cli):
    from conftest import snapshot

    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=2")
    run = Path(r.out.strip().splitlines()[-1])
    before = snapshot(run)
    r = cli("train", run, "--resume")
    assert r.code == 0 and "already finished" in r.err and snapshot(run) == before
    r = cli("train", run, "--resume", "--set", "train.batch_size=8")
    assert (
        r.code == 2
        and "cannot change when resuming" in r.err
        and "train.epochs" in r.err
        and snapshot(run) == before
    )
    r = cli(
        "train", exp, "--resume", "--set", "train.epochs=4"
    )  # experiment folder = its latest run
    assert r.code == 0, r.err
    assert [int(x["epoch"]) for x in history(run)] == [1, 2, 3, 4]


def test_sigint_saves_state_and_prints_resume_command(make_exp):
    exp = make_exp("regression")
    p = start_train(exp, *_sets(["train.epochs=500"]))
    wait_for(
        lambda: (
            (exp / "runs").exists()
            and any((r / "history.csv").exists() for r in (exp / "runs").iterdir())
        )
    )
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    run = run_folder(exp)
    assert f"bigmodel train {run} --resume" in err and "Traceback" not in err
    import json

    assert json.loads((run / "meta.json").read_text())["sessions"][-1]["status"] == "interrupted"
    all_files_load(run)


def test_killed_predict_leaves_no_output(tmp_path, make_exp, cli):

    exp = make_exp("regression")
    assert cli("train", exp, "--set", "train.epochs=1").code == 0
    import pyarrow as pa
    import pyarrow.csv as pc

    n = 8_000_000  # several seconds of predicting: the kill lands mid-file
    rng = np.random.default_rng(0)
    src = tmp_path / "big.csv"
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    block = pa.Table.from_arrays(
        [pa.array(np.arange(n // 8))]
        + [pa.array(rng.normal(size=n // 8).round(2).astype("float32")) for _ in names],
        names=["patient_id", *names],
    )
    with pc.CSVWriter(str(src), block.schema) as w:
        for _ in range(8):
            w.write_table(block)
    out = tmp_path / "preds.csv"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bigmodel_cli",
            "predict",
            str(exp),
            "--input",
            str(src),
            "--output",
            str(out),
        ],
        env=env,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    wait_for(lambda: any(tmp_path.glob(".preds.csv.*")))  # the model is loaded, rows are flowing
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "predict finished before the kill: make the file bigger"
    assert not out.exists()


def test_resume_sweeps_what_a_killed_write_left(make_exp, cli):
    """A kill during a checkpoint save leaves '.last.keras.<random>.keras': resume removes it."""
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=2")
    run = Path(r.out.strip().splitlines()[-1])
    debris = [
        run / "checkpoints" / ".last.keras.ab3_x9zq.keras",
        run / ".history.csv.k2j4h5g6.csv",
        run / "checkpoints" / ".best.keras.qqqqqqqq.keras",
    ]
    for d in debris:
        d.write_bytes(b"PK\x03\x04 half a zip")
    keep = run / "checkpoints" / ".mine"  # not one of ours: left alone
    keep.write_text("x")
    r = cli("train", run, "--resume", "--set", "train.epochs=3")
    assert r.code == 0, r.err
    assert not any(d.exists() for d in debris) and keep.exists()
