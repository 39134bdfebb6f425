"""Nothing lost, whatever happens to a run: file modes, early kills, damaged
checkpoints, full disks, read-only folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize("mask", [pytest.param(0o022, marks=pytest.mark.slow), 0o077])
def test_written_files_follow_the_umask(tmp_path, cli, mask):
    old = os.umask(mask)
    try:
        exp = tmp_path / "exp"
        assert cli("init", exp, "--template", "regression").code == 0
        r = cli("train", exp, "--set", "train.epochs=2")
        assert r.code == 0, r.err
        run = Path(r.out.strip().splitlines()[-1])
        assert cli("eval", run).code == 0
        assert (
            cli(
                "predict", run, "--input", exp / "data" / "test.csv", "--output", tmp_path / "p.csv"
            ).code
            == 0
        )
        assert cli("export", run, "--format", "onnx", "--output", tmp_path / "m.onnx").code == 0
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    files = [
        exp / "experiment.yaml",
        run / "model.keras",
        run / "config.yaml",
        run / "meta.json",
        run / "metrics.json",
        run / "history.csv",
        run / "checkpoints" / "last.keras",
        run / "checkpoints" / "best.keras",
        run / "plots" / "training.png",
        run / "inference.onnx",
        tmp_path / "p.csv",
        tmp_path / "m.onnx",
    ]
    modes = {str(f.relative_to(tmp_path)): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(want)}, modes


# ------------------------------------------------- early kills and damaged checkpoints

from test_resume import (  # noqa: E402
    CFG,
    _sets,
    all_files_load,
    assert_same_weights,
    history,
    start_train,
    wait_for,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with the same seed and config."""
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("ref") / "exp"
    api.init(exp, "regression")
    return api.train(exp, CFG).run_dir


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(
    reference, make_exp, cli
):
    exp = make_exp("regression")
    p = start_train(exp, *_sets(CFG))
    wait_for(
        lambda: (
            (exp / "runs").exists()
            and any((r / "config.yaml").exists() for r in (exp / "runs").iterdir())
        )
    )
    p.kill()
    p.wait()
    run = next((exp / "runs").iterdir())
    assert not (run / "checkpoints" / "last.keras").exists(), "the kill came too late for this test"
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    assert "started again from step 0 in the same folder" in r.err
    assert [p.name for p in (exp / "runs").iterdir()] == [run.name]  # no second folder, no litter
    assert history(run) == history(reference)  # the same config and seed: the same run
    assert_same_weights(run / "model.keras", reference / "model.keras", atol=1e-6)
    all_files_load(run)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(reference, make_exp, cli, damage):
    exp = make_exp("regression")
    r = cli("train", exp, *_sets(["train.epochs=5", *CFG[1:]]))
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    ckpt = run / "checkpoints"
    assert (ckpt / "previous.keras").is_file()
    from bigmodel_cli.training.checkpoints import read_state

    assert (
        read_state(ckpt / "previous.keras").global_step
        < read_state(ckpt / "last.keras").global_step
    )
    last = ckpt / "last.keras"
    data = last.read_bytes()
    last.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00" * 1000, "empty": b""}[damage]
    )
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


# ------------------------------------------------------------------ full disks


@pytest.fixture
def small_fs(tmp_path):
    """small_fs(kb) -> a real tmpfs of that size, unmounted after the test (root only)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (the injected-error tests cover the rest)")
    mounted = []

    def make(kb: int) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(d)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 1024)
        except OSError:
            pass


def _grow(fs: Path, kb: int) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,size={kb}k", str(fs)], check=True)


BIG = [
    "train.epochs=5",
    "model.layers=null",
    "model.architecture=mlp",
    "model.units=[400,400]",
]  # ~700 KB a checkpoint


def test_a_full_disk_during_training_is_one_line_and_resume_goes_on(small_fs, cli):
    fs = small_fs(1500)
    exp = fs / "exp"
    assert cli("init", exp, "--template", "regression").code == 0
    r = cli("train", exp, *_sets(BIG))
    assert r.code == 2, r.err
    run = next((exp / "runs").iterdir())
    line = [
        x
        for x in r.err.strip().splitlines()
        if x.startswith(("error:", "hint:", "internal", "Traceback"))
    ]
    assert (
        len(line) == 2
        and line[0].startswith("error: no space left writing ")
        and "checkpoints/last.keras" in line[0]
    ), r.err
    assert (
        " free, about " in line[0]
        and "needed" in line[0]
        and f"the last good checkpoint is {run}/checkpoints/last.keras (after epoch" in line[0]
    )
    assert line[1] == f"hint: free some space, then: bigmodel train {run} --resume"
    assert not [p for p in run.rglob(".*") if p.is_file()], "a temporary file was left behind"
    _grow(fs, 8000)
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    assert [int(x["epoch"]) for x in history(run)] == [1, 2, 3, 4, 5]
    all_files_load(run)


def test_full_disks_for_predict_export_and_prepare(small_fs, cli, tmp_path):
    exp = tmp_path / "exp"
    assert cli("init", exp, "--template", "regression").code == 0
    r = cli("train", exp, "--set", "train.epochs=2")
    run = Path(r.out.strip().splitlines()[-1])
    lines = (exp / "data" / "test.csv").read_text().splitlines()
    (tmp_path / "big.csv").write_text("\n".join([lines[0]] + lines[1:] * 500) + "\n")
    fs = small_fs(64)
    r = cli("predict", run, "--input", tmp_path / "big.csv", "--output", fs / "p.csv")
    assert (
        r.code == 2
        and f"no space left writing {fs}/p.csv after" in r.err
        and "no output was written" in r.err
    ), r.err
    for fmt, out in (("onnx", "m.onnx"), ("savedmodel", "sm"), ("keras", "m.keras")):
        _fill(fs / "filler")  # leave the model no room
        r = cli("export", run, "--format", fmt, "--output", fs / out)
        assert r.code == 2 and f"no space left writing {fs}/{out}" in r.err and "needed" in r.err, (
            fmt,
            r.err,
        )
        (fs / "filler").unlink()
    assert sorted(os.listdir(fs)) == []  # nothing half-written, nothing left
    import yaml

    rows = 20_000
    (tmp_path / "s.csv").write_text(
        "a,b,label\n" + "".join(f"{i * 0.1},{i % 7},{i % 2}\n" for i in range(rows))
    )
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "experiment.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "task": "binary",
                "data": {
                    "train": str(tmp_path / "s.csv"),
                    "target": "label",
                    "stream": True,
                    "cache": str(fs / "cache"),
                },
                "model": {"architecture": "mlp"},
            }
        )
    )
    r = cli("prepare", tmp_path / "s")
    assert r.code == 2 and "no space left writing the block cache" in r.err and "needed" in r.err, (
        r.err
    )
    assert not [p for p in (fs / "cache").iterdir() if not p.name.endswith(".lock")]


def test_an_injected_enospc_while_saving_names_the_checkpoint(cli, make_exp, monkeypatch):
    """Without root: a model save that fails with ENOSPC on the third checkpoint."""
    import errno

    import keras

    exp = make_exp("regression")
    real = keras.Model.save
    calls = {"n": 0}

    def failing(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(path).write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *a, **k)

    monkeypatch.setattr(keras.Model, "save", failing)
    r = cli("train", exp, "--set", "train.epochs=4")
    assert r.code == 2, r.err
    run = next((exp / "runs").iterdir())
    assert (
        "no space left writing" in r.err
        and "last.keras" in r.err
        and "(after epoch 2)" in r.err
        and "--resume" in r.err
    ), r.err
    assert not [p for p in run.rglob(".*") if p.is_file()]
    monkeypatch.setattr(keras.Model, "save", real)
    assert cli("train", run, "--resume").code == 0
    assert [int(x["epoch"]) for x in history(run)] == [1, 2, 3, 4]


# ------------------------------------------------------------ time-based checkpoints


def test_checkpoint_every_parses_times_and_steps():
    from bigmodel_cli.config.train import checkpoint_interval

    assert (
        checkpoint_interval("10m") == (600, None)
        and checkpoint_interval("30s") == (30, None)
        and checkpoint_interval("1.5h") == (5400, None)
    )
    assert (
        checkpoint_interval(500) == (None, 500)
        and checkpoint_interval("500 steps") == (None, 500)
        and checkpoint_interval("40") == (None, 40)
    )
    for bad in ("soon", "0m", "-5s", "2.5 steps", True):
        with pytest.raises(ValueError):
            checkpoint_interval(bad)


def test_a_bad_checkpoint_every_names_the_key(make_exp, cli):
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.checkpoint_every=soon")
    assert r.code == 2 and "train.checkpoint_every" in r.err and "10m" in r.err, r.err


LONG = [
    "train.epochs=3",
    "train.steps_per_epoch=250",
    "train.steps_per_execution=1",
]  # epochs of about a second


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("long") / "exp"
    api.init(exp, "regression")
    return api.train(exp, [*LONG, "train.checkpoint_every=null"]).run_dir


def test_time_based_checkpoints_save_inside_epochs(make_exp, cli, monkeypatch):
    from bigmodel_cli.training import trainer as train_mod

    seen = []
    real = train_mod.save_checkpoint
    monkeypatch.setattr(
        train_mod,
        "save_checkpoint",
        lambda model, path, state, also=None: (
            seen.append((state.epoch, state.step)),
            real(model, path, state, also),
        )[1],
    )
    exp = make_exp("regression")
    assert cli("train", exp, *_sets([*LONG, "train.checkpoint_every=0.2s"])).code == 0
    assert any(step for _, step in seen), seen  # mid-epoch saves, by the clock
    seen.clear()
    assert (
        cli("train", exp, *_sets(LONG)).code == 0
    )  # the default, 10m: only epoch ends in a short run
    assert all(step == 0 for _, step in seen), seen


@pytest.mark.slow
@pytest.mark.parametrize("when", [0.3, 1.2])
def test_kill9_after_a_time_based_checkpoint_resumes_to_the_same_run(
    long_reference, make_exp, cli, when
):
    """A kill loses at most checkpoint_every of work, and resume from a mid-epoch
    state reproduces the uninterrupted run's batches."""
    import random
    import signal
    import time

    exp = make_exp("regression")
    p = start_train(exp, *_sets([*LONG, "train.checkpoint_every=0.2s"]))
    wait_for(
        lambda: (
            (exp / "runs").exists()
            and any((r / "checkpoints/last.keras").exists() for r in (exp / "runs").iterdir())
        )
    )
    time.sleep(when + random.uniform(0, 0.2))
    p.send_signal(signal.SIGKILL)
    p.wait()
    run = next((exp / "runs").iterdir())
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    assert history(run) == history(long_reference)
    assert_same_weights(run / "model.keras", long_reference / "model.keras", atol=1e-6)


# ------------------------------------------- read-only, vanished, SIGTERM in the final save


def test_resume_in_a_read_only_run_folder_is_one_line(small_fs, cli):
    import subprocess

    fs = small_fs(4000)
    exp = fs / "exp"
    assert cli("init", exp, "--template", "regression").code == 0
    r = cli("train", exp, "--set", "train.epochs=2")
    run = Path(r.out.strip().splitlines()[-1])
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    try:
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
        r = cli("train", run, "--resume", "--set", "train.epochs=4")
        assert r.code == 2, r.err
        assert (
            "the file system is read-only" in r.err and f"bigmodel train {run} --resume" in r.err
        ), r.err
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    assert cli("train", run, "--resume", "--set", "train.epochs=4").code == 0


def test_a_run_folder_that_vanishes_while_training_is_one_line(make_exp):
    import shutil

    exp = make_exp("regression")
    p = start_train(exp, *_sets(["train.epochs=400", "train.checkpoint_every=1"]))
    wait_for(
        lambda: (
            (exp / "runs").exists()
            and any((r / "checkpoints/last.keras").exists() for r in (exp / "runs").iterdir())
        )
    )
    run = next((exp / "runs").iterdir())
    shutil.rmtree(run)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert f"the run folder {run} vanished while training" in err, err
    assert "Traceback" not in err


def test_sigterm_during_the_final_save_finishes_model_keras(make_exp, cli, monkeypatch):
    import signal

    from bigmodel_cli.training import trainer as train_mod

    real = train_mod.finalize_model

    def slow_final(src, dst, wrap=None, adjust=None):
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's notice arrives mid-save
        return real(src, dst, wrap, adjust)

    monkeypatch.setattr(train_mod, "finalize_model", slow_final)
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=2")
    assert r.code == 130, r.err
    run = next((exp / "runs").iterdir())
    assert (
        "SIGTERM came while the final model was being saved" in r.err
        and "the run is complete" in r.err
    )
    import keras

    keras.models.load_model(run / "model.keras", compile=False)  # whole
    monkeypatch.setattr(train_mod, "finalize_model", real)
    r = cli("train", run, "--resume")
    assert r.code == 0 and "already finished" in r.err, r.err


def test_resume_of_a_finished_run_without_model_keras_writes_it(make_exp, cli):
    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=2")
    run = Path(r.out.strip().splitlines()[-1])
    (run / "model.keras").unlink()  # a kill -9 between the last checkpoint and model.keras
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    import keras

    keras.models.load_model(run / "model.keras", compile=False)


def test_previous_checkpoint_without_hard_links(tmp_path, monkeypatch):
    """A file system without hard links: the current last.keras is renamed to previous.keras."""
    from bigmodel_cli.training import checkpoints as train_mod

    last, previous = tmp_path / "last.keras", tmp_path / "previous.keras"
    last.write_bytes(b"old state")
    monkeypatch.setattr(
        train_mod.os,
        "link",
        lambda a, b: (_ for _ in ()).throw(OSError(1, "Operation not permitted")),
    )
    train_mod.keep_previous(last, previous)
    assert previous.read_bytes() == b"old state" and not last.exists()
    assert not list(tmp_path.glob(".*"))
    monkeypatch.undo()
    last.write_bytes(b"newer state")
    train_mod.keep_previous(last, previous)  # with hard links: both names, one file
    assert previous.read_bytes() == b"newer state" and last.read_bytes() == b"newer state"
    assert os.stat(last).st_ino == os.stat(previous).st_ino


def test_a_checkpoint_reuses_keras_attribute_skipsets(tmp_path):
    """Keras caches each kind's attribute skipset under one name and looks it up under
    another, so each save built a throwaway Layer() per layer; checkpoints fill the name
    it reads, and the file still loads to the same weights."""
    import keras
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    from bigmodel_cli.training.checkpoints import TrainState, save_checkpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    save_checkpoint(model, tmp_path / "last.keras", TrainState(epoch=1))
    cached = global_state.get_global_attribute("saving_attr_skiplist_Layer")
    assert cached is not None and cached == saving_lib.get_attr_skipset("Layer")
    back = keras.saving.load_model(tmp_path / "last.keras", compile=False)
    np.testing.assert_array_equal(back.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())
