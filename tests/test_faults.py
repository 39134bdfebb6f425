"""Nothing lost, whatever happens to a run: file modes, early kills, damaged
checkpoints, full disks, read-only folders."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import run_process


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, cli, mask):
    old = os.umask(mask)
    try:
        exp = tmp_path / "exp"
        assert cli("init", exp, "--template", "regression").code == 0
        r = cli("train", exp, "--set", "train.epochs=2")
        assert r.code == 0, r.err
        run = Path(r.out.strip().splitlines()[-1])
        assert cli("eval", run).code == 0
        assert cli("predict", run, "--input", exp / "data" / "test.csv", "--output", tmp_path / "p.csv").code == 0
        assert cli("export", run, "--format", "onnx", "--output", tmp_path / "m.onnx").code == 0
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    files = [exp / "experiment.yaml", run / "model.keras", run / "config.yaml", run / "meta.json", run / "metrics.json", run / "history.csv",
             run / "checkpoints" / "last.keras", run / "checkpoints" / "best.keras", run / "plots" / "training.png", run / "inference.onnx", tmp_path / "p.csv", tmp_path / "m.onnx"]
    modes = {str(f.relative_to(tmp_path)): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(want)}, modes


# ------------------------------------------------- early kills and damaged checkpoints

from test_resume import CFG, _sets, all_files_load, history, start_train, wait_for, weights  # noqa: E402


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with the same seed and config."""
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("ref") / "exp"
    api.init(exp, "regression")
    return api.train(exp, CFG).run_dir


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(reference, make_exp, cli):
    exp = make_exp("regression")
    p = start_train(exp, *_sets(CFG))
    wait_for(lambda: (exp / "runs").exists() and any((r / "config.yaml").exists() for r in (exp / "runs").iterdir()))
    p.kill()
    p.wait()
    run = next((exp / "runs").iterdir())
    assert not (run / "checkpoints" / "last.keras").exists(), "the kill came too late for this test"
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    assert "started again from step 0 in the same folder" in r.err
    assert [p.name for p in (exp / "runs").iterdir()] == [run.name]  # no second folder, no litter
    assert history(run) == history(reference)  # the same config and seed: the same run
    for a, b in zip(weights(run / "model.keras"), weights(reference / "model.keras")):
        np.testing.assert_allclose(a, b, atol=1e-6)
    all_files_load(run)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(reference, make_exp, cli, damage):
    exp = make_exp("regression")
    r = cli("train", exp, *_sets(["train.epochs=5", *CFG[1:]]))
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    ckpt = run / "checkpoints"
    assert (ckpt / "previous.keras").is_file()
    from bigmodel_cli.train import read_state

    assert read_state(ckpt / "previous.keras").global_step < read_state(ckpt / "last.keras").global_step
    last = ckpt / "last.keras"
    data = last.read_bytes()
    last.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 1000, "empty": b""}[damage])
    r = cli("train", run, "--resume", "--set", "train.epochs=8")
    assert r.code == 0, r.err
    assert f"checkpoint {last} is damaged" in r.err and "resuming from" in r.err, r.err
    h = history(run)
    assert [int(x["epoch"]) for x in h] == list(range(1, 9))
    assert h == history(reference)  # the epochs redone from the previous state are the same epochs
    all_files_load(run)


def test_every_checkpoint_damaged_starts_the_run_again(make_exp, cli):
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=3")
    run = Path(r.out.strip().splitlines()[-1])
    for f in (run / "checkpoints").glob("*.keras"):
        f.write_bytes(b"PK\x03\x04 not really")
    r = cli("train", run, "--resume", "--set", "train.epochs=4")
    assert r.code == 0, r.err
    assert "damaged" in r.err and "started again from step 0" in r.err
    assert [int(x["epoch"]) for x in history(run)] == [1, 2, 3, 4]
